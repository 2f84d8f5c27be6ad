"""Voucher writes: batching, asynchronous results by callback and by polling, conflicts."""
from __future__ import annotations

import unicodedata

from hexaflow.connector import (ACCEPTED, CONFLICT, GENERATED, POSTED, QUEUED, REJECTED,
                                WriteItem)

from misa_helpers import sales_voucher, voucher_item, wait_for

SKUS = ["AO-THUN-S", "QUAN-JEAN-30", "MU-LUOI-TRAI", "HOP-QUA"]


def _vouchers(count: int, offset: int = 0) -> list[dict]:
    out = []
    for n in range(offset, offset + count):
        lines = [(SKUS[n % 4], 1 + n % 3, 150000), (SKUS[(n + 1) % 4], 1, 45000)]
        out.append(sales_voucher(n, lines, discount_rate=10 if n % 2 else 0,
                                 balanced=n % 25 != 7))
    return out


def _expected(vouchers: list[dict]) -> dict[str, str]:
    return {v["org_refid"]: ACCEPTED if int(v["org_refno"][4:]) % 25 != 7 else REJECTED
            for v in vouchers}


def _save_sizes(admin) -> list[int]:
    return [c["vouchers"] for c in admin.get("calls")["calls"] if c["function"] == "save"]


def test_250_vouchers_go_in_batches_and_all_end_by_callback(connector, admin, receiver):
    app, url = receiver
    admin.post("callback", {"url": url, "enabled": True})
    vouchers = _vouchers(250)
    results = connector.write([voucher_item(v) for v in vouchers])
    assert [r.status for r in results] == [QUEUED] * 250
    assert [r.target_ref for r in results] == [v["org_refid"] for v in vouchers]
    assert _save_sizes(admin) == [100, 100, 50]

    expected = _expected(vouchers)
    latest = wait_for(lambda: (lambda got: got if len(got) == 250 else None)(app.latest()))
    assert {ref: r.status for ref, r in latest.items()} == expected
    assert list(expected.values()).count(REJECTED) == 10
    rejected = next(r for r in latest.values() if r.status == REJECTED)
    assert rejected.code == "InvalidParam"
    assert "total_amount" in rejected.message
    assert app.refused == 0
    assert admin.get("callback")["delivered"] == 3      # one callback per save call


def test_with_callbacks_off_polling_finds_every_outcome(connector, admin):
    admin.post("callback", {"url": None, "enabled": False})
    vouchers = _vouchers(250, offset=1000)
    refs = [r.target_ref for r in connector.write([voucher_item(v) for v in vouchers])]
    admin.drain()
    outcomes = {r.target_ref: r for r in connector.poll(refs)}
    assert {ref: r.status for ref, r in outcomes.items()} == _expected(vouchers)
    rejected = [r for r in outcomes.values() if r.status == REJECTED]
    assert rejected and all(r.code == "InvalidParam" and r.message for r in rejected)


def test_a_resend_before_generation_updates_the_request(connector, admin):
    voucher = sales_voucher(5, [("AO-THUN-M", 1, 250000)])
    connector.write([voucher_item(voucher)])
    admin.drain()
    changed = sales_voucher(5, [("AO-THUN-M", 3, 250000)])
    assert changed["org_refid"] == voucher["org_refid"]
    assert connector.write([voucher_item(changed)])[0].status == QUEUED
    admin.drain()
    requests = admin.requests()
    assert len(requests) == 1
    request = requests[voucher["org_refid"]]
    assert request["status"] == "accepted"
    assert request["payload"]["detail"][0]["quantity"] == 3


def test_after_generation_a_resend_reports_one_conflict(connector, admin, receiver):
    app, url = receiver
    admin.post("callback", {"url": url, "enabled": True})
    voucher = sales_voucher(6, [("TUI-XACH", 1, 1250000)])
    ref = voucher["org_refid"]
    connector.write([voucher_item(voucher)])
    admin.drain()
    admin.post(f"requests/{ref}/generate")
    wait_for(lambda: app.latest().get(ref) and app.latest()[ref].status == GENERATED)

    changed = sales_voucher(6, [("TUI-XACH", 2, 1250000)])
    calls_before = len(admin.get("calls")["calls"])
    assert connector.write([voucher_item(changed)])[0].status == QUEUED
    admin.drain()
    conflict = wait_for(lambda: app.latest()[ref].status == CONFLICT and app.latest()[ref])
    assert conflict.code == "IsCreatedVoucher"
    assert conflict.message == "Đã sinh chứng từ kế toán, không thể cập nhật được."
    assert [r.status for r in app.results if r.target_ref == ref].count(CONFLICT) == 1
    assert len(admin.get("calls")["calls"]) == calls_before + 1     # never retried
    request = admin.requests()[ref]
    assert request["status"] == "generated"
    assert request["payload"]["detail"][0]["quantity"] == 1          # unchanged
    assert connector.poll([ref])[0].status == CONFLICT


def test_posting_a_sales_voucher_issues_stock_and_is_reported(connector, admin):
    before = {(r["inventory_item_code"], r["stock_code"]): r["quantity_balance"]
              for p in connector.read("inventory_balance", {}) for r in p.records}
    voucher = sales_voucher(7, [("GIAY-THE-THAO-40", 2, 890000)], stock="KHO_HN")
    ref = voucher["org_refid"]
    connector.write([voucher_item(voucher)])
    admin.drain()
    admin.post(f"requests/{ref}/generate")
    admin.post(f"requests/{ref}/post")
    assert connector.poll([ref])[0].status == POSTED
    after = {(r["inventory_item_code"], r["stock_code"]): r["quantity_balance"]
             for p in connector.read("inventory_balance", {}) for r in p.records}
    key = ("GIAY-THE-THAO-40", "KHO_HN")
    assert after[key] == before[key] - 2


def test_dictionary_entries_ride_along_and_are_created_first(connector, admin):
    customer = {"dictionary_type": 1, "account_object_code": "HRV-777",
                "account_object_name": "Phạm Thị Dung", "account_object_type": 1,
                "is_customer": True}
    voucher = sales_voucher(8, [("HOP-QUA", 2, 45000)], customer="HRV-777")
    items = [WriteItem("c1", "dictionary", "upsert", "HRV-777", customer), voucher_item(voucher)]
    results = {r.ref: r for r in connector.write(items)}
    assert results["c1"].status == QUEUED
    assert results["c1"].target_ref == "dictionary:1:HRV-777"
    calls = [c for c in admin.get("calls")["calls"] if c["function"].startswith("save")]
    assert calls == [dict(calls[0], function="save", vouchers=1, dictionary=1)]
    admin.drain()
    assert admin.requests()[voucher["org_refid"]]["status"] == "accepted"
    assert connector.poll(["dictionary:1:HRV-777"])[0].status == ACCEPTED


def test_dictionary_alone_goes_through_save_dictionary_in_batches(connector, admin):
    entries = [WriteItem(f"i{n}", "dictionary", "upsert", f"SP{n:04d}",
                         {"dictionary_type": 3, "inventory_item_code": f"SP{n:04d}",
                          "inventory_item_name": f"Sản phẩm {n}", "unit_name": "Cái"})
               for n in range(450)]
    results = connector.write(entries)
    assert {r.status for r in results} == {QUEUED}
    sizes = [c["dictionary"] for c in admin.get("calls")["calls"]
             if c["function"] == "save_dictionary"]
    assert sizes == [200, 200, 50]


def test_a_dictionary_code_is_sent_and_polled_as_it_is_read_back(connector, admin):
    # docs/codes-and-names.md: a code with stray spaces, decomposed (NFD), is one code with its
    # trimmed NFC spelling; so is a name with stray spaces.
    code = unicodedata.normalize("NFD", " KH-LÊ-01 ")
    entry = {"dictionary_type": 1, "account_object_code": code,
             "account_object_name": unicodedata.normalize("NFD", "  Lê   Văn  Tám "),
             "account_object_type": 1, "is_customer": True}
    [result] = connector.write([WriteItem("c1", "dictionary", "upsert", code, entry)])
    assert result.status == QUEUED and result.target_ref == "dictionary:1:KH-LÊ-01"
    admin.drain()
    stored = admin.get("dictionary")["account_objects"]
    assert "KH-LÊ-01" in {a["account_object_code"] for a in stored}
    assert [r.status for r in connector.poll([result.target_ref])] == [ACCEPTED]
    assert connector.exists("dictionary", f"1:{code}") is True
    read = [r for page in connector.read("customers", {}) for r in page.records
            if r["account_object_code"] == "KH-LÊ-01"]
    assert [r["account_object_name"] for r in read] == ["Lê Văn Tám"]


def test_delete_withdraws_a_request_and_a_bad_item_is_rejected_locally(connector, admin):
    voucher = sales_voucher(9, [("HOP-QUA", 1, 45000)])
    connector.write([voucher_item(voucher)])
    admin.drain()
    results = connector.write([
        voucher_item(voucher, action="delete"),
        WriteItem("bad", "voucher", "upsert", "X", {"voucher_type": 13}),
        WriteItem("odd", "sales_order", "upsert", "Y", {}),
    ])
    assert [r.status for r in results] == [QUEUED, REJECTED, REJECTED]
    assert "org_refid" in results[1].message
    admin.drain()
    assert admin.requests()[voucher["org_refid"]]["status"] == "deleted"
    assert connector.poll([voucher["org_refid"]])[0].status == "deleted"


def test_transient_faults_and_429_are_retried(connector, admin):
    admin.post("faults", {"error_rate": 0.3, "kinds": ["429", "503"], "seed": 7})
    vouchers = [sales_voucher(n, [("HOP-QUA", 1, 45000)]) for n in range(300, 310)]
    results = connector.write([voucher_item(v) for v in vouchers[:5]]) + \
        connector.write([voucher_item(v) for v in vouchers[5:]])
    assert {r.status for r in results} == {QUEUED}
    assert sum(admin.get("faults")["injected"].values()) >= 1
    admin.post("faults", {})


def test_posting_a_return_brings_stock_back(connector, admin):
    voucher = sales_voucher("R1", [("BO-DO-NGU-M", 3, 680000)], stock="KHO_DN")
    voucher.update(voucher_type=12, reftype=3540, is_sale_with_outward=False,
                   is_return_with_inward=True)
    ref = voucher["org_refid"]
    before = admin.get("stock")["balances"]
    connector.write([voucher_item(voucher)])
    admin.drain()
    admin.post(f"requests/{ref}/generate")
    admin.post(f"requests/{ref}/post")
    after = admin.get("stock")["balances"]

    def balance(rows):
        return next(r["quantity_balance"] for r in rows
                    if (r["inventory_item_code"], r["stock_code"]) == ("BO-DO-NGU-M", "KHO_DN"))
    assert balance(after) == balance(before) + 3


def test_deleting_a_generated_request_is_a_conflict(connector, admin):
    voucher = sales_voucher(21, [("HOP-QUA", 1, 45000)])
    ref = voucher["org_refid"]
    connector.write([voucher_item(voucher)])
    admin.drain()
    admin.post(f"requests/{ref}/generate")
    assert connector.write([voucher_item(voucher, action="delete")])[0].status == QUEUED
    admin.drain()
    result = connector.poll([ref])[0]
    assert (result.status, result.code) == (CONFLICT, "IsCreatedVoucher")
    assert admin.requests()[ref]["status"] == "generated"


def test_a_refused_call_is_split_until_each_part_fits(sandbox, admin):
    from misa_helpers import make_connector
    conn = make_connector(sandbox[1].url, MISA_SAVE_BATCH="150")   # above MISA's limit
    vouchers = [sales_voucher(n, [("HOP-QUA", 1, 45000)]) for n in range(500, 650)]
    results = conn.write([voucher_item(v) for v in vouchers])
    conn.close()
    assert {r.status for r in results} == {QUEUED}
    assert _save_sizes(admin) == [150, 75, 75]
