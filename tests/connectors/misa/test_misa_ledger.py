"""The sandbox's books: what posting a request writes to the journal (by voucher type and line
accounts), the balances and stock it moves, accountant mode, and what MISA refuses about
accounts. Raw HTTP against the sandbox's real routes; the accountant through /_sandbox/."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from hexaflow.connector import ACCEPTED, GENERATED, POSTED, REJECTED
from hexaflow.connectors.misa.ids import org_refid

from misa_helpers import sales_voucher, voucher_item, wait_for

BANK = "0071000123456"          # the company setup's bank account
COSTS = {"AO-THUN-S": 100000, "QUAN-JEAN-30": 200000}


def line(sku: str, quantity: int, amount: int, discount: int = 0, vat: int = 0,
         **accounts: str) -> dict[str, Any]:
    return {"inventory_item_code": sku, "stock_code": "KHO_HCM", "quantity": quantity,
            "unit_price": amount // quantity, "amount": amount, "discount_amount": discount,
            "vat_rate": 8, "vat_amount": vat, "account_object_code": "KH00001", **accounts}


SALE_ACCOUNTS = {"debit_account": "131", "credit_account": "5111", "vat_account": "33311",
                 "discount_account": "5211", "cost_account": "632", "stock_account": "1561"}
RETURN_ACCOUNTS = {"debit_account": "5212", "credit_account": "131", "vat_account": "33311",
                   "cost_account": "632", "stock_account": "1561"}


def voucher(vtype: int, reftype: int, name: str, detail: list[dict[str, Any]], *,
            refno: str = "HRV1", **header: Any) -> dict[str, Any]:
    """A voucher whose header totals are the sums of its lines (types 1, 3, 4, 5: Σ amount)."""
    ref = org_refid("shop1", name, refno)
    sale = sum(d.get("amount", 0) for d in detail)
    discount = sum(d.get("discount_amount", 0) for d in detail)
    vat = sum(d.get("vat_amount", 0) for d in detail)
    totals = ({"total_amount": sale} if vtype in (1, 3, 4, 5) else
              {"total_sale_amount": sale, "total_discount_amount": discount,
               "total_vat_amount": vat, "total_amount": sale - discount + vat})
    return {"voucher_type": vtype, "reftype": reftype, "org_refid": ref, "org_refno": refno,
            "refno_finance": f"{name}_{refno}", "refdate": "2026-05-20T10:15:00+07:00",
            "posted_date": "2026-05-20T10:15:00+07:00", "account_object_code": "KH00001",
            **totals, **header, "detail": detail}


def money(vtype: int, reftype: int, debit: str, credit: str, amount: int = 500000,
          refno: str = "HRV1", **header: Any) -> dict[str, Any]:
    return voucher(vtype, reftype, f"money{vtype}", [
        {"description": "Tiền đơn hàng", "debit_account": debit, "credit_account": credit,
         "amount": amount, "account_object_code": "KH00001"}], refno=refno, **header)


class Books:
    """The shop's side (save over the real API) and the accountant's (generate, post)."""

    def __init__(self, raw, admin):
        self.raw, self.admin = raw, admin
        admin.post("costs", {"costs": COSTS})

    def save(self, *vouchers: dict[str, Any]) -> dict[str, dict[str, Any]]:
        assert self.raw.call("save", {"voucher": list(vouchers)})["Success"] is True
        self.admin.drain()
        requests = self.admin.requests()
        return {v["org_refid"]: requests[v["org_refid"]] for v in vouchers}

    def post(self, *vouchers: dict[str, Any]) -> None:
        for ref, request in self.save(*vouchers).items():
            assert request["status"] == "accepted", request["errors"]
            assert self.admin.post(f"requests/{ref}/generate")["status"] == "generated"
            assert self.admin.post(f"requests/{ref}/post")["status"] == "posted"

    def refused(self, voucher: dict[str, Any]) -> str:
        request = self.save(voucher)[voucher["org_refid"]]
        assert request["status"] == "rejected"
        return "; ".join(e["error_message"] for e in request["errors"])

    def ledger(self, refno: str | None = None) -> dict[str, Any]:
        return self.admin.get("ledger" + (f"?org_refno={quote(refno)}" if refno else ""))

    def by_account(self, refno: str | None = None) -> dict[str, str]:
        return self.ledger(refno)["balances"]["by_account"]

    def on_hand(self, sku: str, stock: str = "KHO_HCM") -> Decimal:
        rows = json.loads(self.raw.call("get_list_inventory_balance", {"skip": 0, "take": 100})["Data"])
        return next(Decimal(str(r["quantity_balance"])) for r in rows
                    if (r["inventory_item_code"], r["stock_code"]) == (sku, stock))


@pytest.fixture
def books(raw, admin) -> Books:
    return Books(raw, admin)


def assert_balanced(journal: list[dict[str, Any]]) -> None:
    refs = {row["org_refid"] for row in journal}
    for ref in refs:
        rows = [row for row in journal if row["org_refid"] == ref]
        assert sum(Decimal(r["debit"]) for r in rows) == sum(Decimal(r["credit"]) for r in rows)


# -- posting, by voucher type ----------------------------------------------------------------
def test_a_sales_voucher_with_stock_issue_posts_revenue_vat_discount_and_cost(books):
    before = books.on_hand("AO-THUN-S")
    sale = voucher(13, 3530, "BH", [
        line("AO-THUN-S", 2, 500000, 50000, 36000, **SALE_ACCOUNTS),
        line("DV_VANCHUYEN", 1, 30000, 0, 2400, debit_account="131", credit_account="5113",
             vat_account="33311", stock_code=None)], is_sale_with_outward=True)
    books.post(sale)
    ledger = books.ledger()
    assert ledger["balances"]["by_account"] == {
        "131": "518400", "1561": "-200000", "33311": "-38400", "5111": "-500000",
        "5113": "-30000", "5211": "50000", "632": "200000"}
    assert ledger["balances"]["by_account_object"] == {"KH00001": ledger["balances"]["by_account"]}
    assert ledger["balances"]["by_org_refno"] == {"HRV1": ledger["balances"]["by_account"]}
    assert ledger["stock"]["by_org_refno"] == {"HRV1": {"AO-THUN-S@KHO_HCM": "-2"}}
    assert books.on_hand("AO-THUN-S") == before - 2           # stock moves as the journal says
    assert_balanced(ledger["journal"])
    cost = [r for r in ledger["journal"] if r["account"] in ("632", "1561")]
    assert [(r["account"], r["debit"], r["credit"], r["quantity"]) for r in cost] == [
        ("632", "200000", "0", None), ("1561", "0", "200000", "-2")]
    assert {(r["refno_finance"], r["voucher_type"], r["reftype"], r["posted_date"])
            for r in ledger["journal"]} == {("BH_HRV1", 13, 3530, "2026-05-20T10:15:00+07:00")}


def test_a_discount_without_discount_account_is_netted_into_revenue(books):
    accounts = {k: v for k, v in SALE_ACCOUNTS.items() if k != "discount_account"}
    books.post(voucher(13, 3530, "BH", [line("AO-THUN-S", 2, 500000, 50000, 36000, **accounts)],
                       is_sale_with_outward=True))
    assert books.by_account() == {"131": "486000", "1561": "-200000", "33311": "-36000",
                                  "5111": "-450000", "632": "200000"}


def test_a_sale_without_stock_issue_posts_no_cost_and_moves_no_stock(books):
    before = books.on_hand("AO-THUN-S")
    books.post(voucher(13, 3530, "BH", [line("AO-THUN-S", 2, 500000, 0, 40000, **SALE_ACCOUNTS)],
                       is_sale_with_outward=False))
    assert books.by_account() == {"131": "540000", "33311": "-40000", "5111": "-500000"}
    assert books.ledger()["stock"]["by_org_refno"] == {}
    assert books.on_hand("AO-THUN-S") == before


def test_the_default_cost_price_is_the_items_unit_price(books, admin):
    item = next(i for i in admin.get("dictionary")["inventory_items"]
                if i["inventory_item_code"] == "MU-LUOI-TRAI")
    books.post(voucher(13, 3530, "BH", [line("MU-LUOI-TRAI", 3, 450000, 0, 0, **SALE_ACCOUNTS)],
                       is_sale_with_outward=True))
    assert Decimal(books.by_account()["632"]) == 3 * Decimal(str(item["unit_price"])) == 180000


def test_a_sales_return_with_inward_takes_back_revenue_vat_and_stock(books):
    before = books.on_hand("AO-THUN-S")
    books.post(voucher(12, 3540, "BTL", [line("AO-THUN-S", 1, 250000, 25000, 18000, **RETURN_ACCOUNTS)],
                       is_return_with_inward=True))
    ledger = books.ledger()
    assert ledger["balances"]["by_account"] == {
        "131": "-243000", "1561": "100000", "33311": "18000", "5212": "225000", "632": "-100000"}
    assert ledger["stock"]["by_org_refno"] == {"HRV1": {"AO-THUN-S@KHO_HCM": "1"}}
    assert books.on_hand("AO-THUN-S") == before + 1
    assert_balanced(ledger["journal"])


def test_a_sales_return_with_a_discount_account_credits_it(books):
    books.post(voucher(12, 3540, "BTL", [line("AO-THUN-S", 1, 250000, 25000, 18000,
                                              discount_account="5211", **RETURN_ACCOUNTS)],
                       is_return_with_inward=False))
    assert books.by_account() == {"131": "-243000", "33311": "18000", "5211": "-25000",
                                  "5212": "250000"}


def test_a_sales_return_without_inward_moves_no_stock(books):
    before = books.on_hand("AO-THUN-S")
    books.post(voucher(12, 3540, "BTL", [line("AO-THUN-S", 1, 250000, 0, 20000, **RETURN_ACCOUNTS)]))
    assert books.by_account() == {"131": "-270000", "33311": "20000", "5212": "250000"}
    assert books.on_hand("AO-THUN-S") == before


def test_a_sales_allowance_debits_the_allowance_and_vat(books):
    books.post(voucher(10, 3550, "GG", [line("AO-THUN-S", 1, 100000, 0, 8000, debit_account="5213",
                                             credit_account="131", vat_account="33311")]))
    assert books.by_account() == {"131": "-108000", "33311": "8000", "5213": "100000"}


@pytest.mark.parametrize("vtype, reftype, debit, credit, header", [
    (1, 1500, "1121", "131", {"bank_account_number": BANK}),
    (3, 1510, "131", "1121", {"bank_account_number": BANK}),
    (4, 1020, "131", "1111", {}),
    (5, 1010, "1111", "131", {}),
])
def test_cash_and_bank_documents_debit_and_credit_their_accounts(books, vtype, reftype, debit,
                                                                 credit, header):
    books.post(money(vtype, reftype, debit, credit, **header))
    ledger = books.ledger()
    assert ledger["balances"]["by_account"] == {debit: "500000", credit: "-500000"}
    assert ledger["balances"]["by_account_object"] == {"KH00001": {debit: "500000",
                                                                   credit: "-500000"}}


def test_a_sales_order_posts_nothing_and_a_stock_receipt_moves_stock_only(books):
    before = books.on_hand("QUAN-JEAN-30")
    order = voucher(20, 3520, "DH", [line("QUAN-JEAN-30", 1, 450000, 0, 36000)])
    receipt = voucher(7, 2014, "NK", [{"inventory_item_code": "QUAN-JEAN-30", "stock_code": "KHO_HCM",
                                       "quantity": 4}], refno="NK1")
    books.post(order, receipt)
    ledger = books.ledger()
    assert [(r["org_refno"], r["account"], r["debit"], r["credit"], r["quantity"])
            for r in ledger["journal"]] == [("NK1", "1561", "0", "0", "4")]
    assert ledger["stock"]["by_org_refno"] == {"NK1": {"QUAN-JEAN-30@KHO_HCM": "4"}}
    assert books.on_hand("QUAN-JEAN-30") == before + 4


def test_an_orders_documents_clear_its_receivable_and_the_filter_shows_only_that_order(books):
    sale = voucher(13, 3530, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000, **SALE_ACCOUNTS)],
                   refno="A1", is_sale_with_outward=True)
    receipt = money(1, 1500, "1121", "131", 270000, refno="A1", bank_account_number=BANK)
    other = voucher(13, 3530, "BH", [line("QUAN-JEAN-30", 1, 450000, 0, 36000, **SALE_ACCOUNTS)],
                    refno="B2", is_sale_with_outward=True)
    books.post(sale, receipt, other)
    a1 = books.ledger("A1")
    assert {r["org_refno"] for r in a1["journal"]} == {"A1"}
    assert a1["balances"]["by_account"]["131"] == "0"
    assert a1["balances"]["by_account"]["1121"] == "270000"
    assert a1["stock"]["by_org_refno"] == {"A1": {"AO-THUN-S@KHO_HCM": "-1"}}
    everything = books.ledger()
    assert everything["balances"]["by_org_refno"]["B2"]["131"] == "486000"
    assert everything["balances"]["by_account"]["131"] == "486000"
    assert_balanced(everything["journal"])


# -- the accountant ------------------------------------------------------------------------
def _statuses(app, ref: str) -> list[str]:
    with app.lock:
        return [r.status for r in app.results if r.target_ref == ref]


def test_accountant_mode_generates_and_posts_what_the_worker_accepts_with_the_same_callbacks(
        connector, admin, receiver, books):
    app, url = receiver
    admin.post("callback", {"url": url, "enabled": True})
    manual = sales_voucher("M1", [("AO-THUN-S", 1, 250000)])
    connector.write([voucher_item(manual)])
    admin.drain()
    admin.post(f"requests/{manual['org_refid']}/generate")
    admin.post(f"requests/{manual['org_refid']}/post")

    assert admin.post("options", {"accountant": True})["accountant"] is True
    automatic = sales_voucher("A1", [("AO-THUN-S", 1, 250000)])
    bad = sales_voucher("A2", [("AO-THUN-S", 1, 250000)], balanced=False)
    connector.write([voucher_item(automatic), voucher_item(bad)])
    wait_for(lambda: POSTED in _statuses(app, automatic["org_refid"]) and _statuses(app, bad["org_refid"]))
    admin.drain()
    assert _statuses(app, manual["org_refid"]) == [ACCEPTED, GENERATED, POSTED]
    assert _statuses(app, automatic["org_refid"]) == [ACCEPTED, GENERATED, POSTED]
    assert _statuses(app, bad["org_refid"]) == [REJECTED]
    polled = {r.target_ref: r.status for r in connector.poll([manual["org_refid"], automatic["org_refid"]])}
    assert polled == {manual["org_refid"]: POSTED, automatic["org_refid"]: POSTED}
    requests = admin.requests()
    assert requests[automatic["org_refid"]]["status"] == "posted"
    assert requests[bad["org_refid"]]["status"] == "rejected"
    assert books.by_account("#HRVA1")["1111"] == "270000"

    admin.post("reset", {"data": "demo"})
    assert admin.post("options", {})["accountant"] is False


def test_post_all_generates_and_posts_every_accepted_request_once(books, admin):
    sales = [sales_voucher(f"P{n}", [("AO-THUN-S", 1, 250000)]) for n in range(3)]
    sales.append(sales_voucher("P9", [("AO-THUN-S", 1, 250000)], balanced=False))
    books.save(*sales)
    admin.post(f"requests/{sales[0]['org_refid']}/generate")          # one already generated
    assert admin.post("accountant/post_all") == {"generated": 2, "posted": 3}
    assert admin.post("accountant/post_all") == {"generated": 0, "posted": 0}
    statuses = {ref: r["status"] for ref, r in admin.requests().items()}
    assert [statuses[v["org_refid"]] for v in sales] == ["posted", "posted", "posted", "rejected"]
    assert books.by_account()["1111"] == str(3 * 270000)


# -- the chart of accounts and bank accounts ------------------------------------------------
def test_the_chart_and_the_bank_account_are_served_by_get_dictionary(raw):
    chart = json.loads(raw.call("get_dictionary", {"data_type": 5, "skip": 0, "take": 100})["Data"])
    accounts = {a["account_number"]: a for a in chart}
    for number in ("111", "1111", "112", "1121", "131", "1388", "138", "156", "1561", "333", "3331",
                   "33311", "511", "5111", "5112", "5113", "521", "5211", "5212", "5213", "632", "711"):
        assert number in accounts
    assert accounts["33311"]["grade"] == 3
    assert accounts["33311"]["parent_id"] == accounts["3331"]["account_id"]
    assert accounts["511"]["is_parent"] is True and accounts["131"]["is_parent"] is False
    banks = json.loads(raw.call("get_dictionary", {"data_type": 8, "skip": 0, "take": 100})["Data"])
    assert [b["bank_account_number"] for b in banks] == [BANK]


def test_a_replaced_chart_makes_131_a_parent_once_1311_exists(books, admin, raw):
    chart = admin.get("dictionary")["accounts"]
    answer = admin.post("chart", {"accounts": chart + [{"account_number": "1311",
                                                        "account_name": "Phải thu khách lẻ"}]})
    assert "1311" in answer["accounts"]
    message = books.refused(money(5, 1010, "1111", "131"))
    assert "credit_account 131 has sub-accounts (1311)" in message
    admin.post("options", {"reject_parent_accounts": False})
    books.post(money(5, 1010, "1111", "131", refno="HRV2"))
    admin.post("options", {"reject_parent_accounts": True})
    books.post(money(5, 1010, "1111", "1311", refno="HRV3"))
    served = json.loads(raw.call("get_dictionary", {"data_type": 5, "skip": 0, "take": 100})["Data"])
    assert next(a for a in served if a["account_number"] == "131")["is_parent"] is True


# -- refusals --------------------------------------------------------------------------------
def test_an_account_outside_the_chart_is_refused(books):
    message = books.refused(voucher(13, 3530, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000,
                                                          **{**SALE_ACCOUNTS, "credit_account": "5118"})]))
    assert "line 1: credit_account 5118 is not in the chart of accounts" in message
    assert "không có trong hệ thống tài khoản" in message


def test_a_parent_account_is_refused_unless_switched_off(books, admin):
    sale = voucher(13, 3530, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000,
                                         **{**SALE_ACCOUNTS, "credit_account": "511"})])
    message = books.refused(sale)
    assert "credit_account 511 has sub-accounts (5111, 5112, 5113); post to one of them" in message
    assert admin.post("options", {"reject_parent_accounts": False})["reject_parent_accounts"] is False
    books.post(sale)
    assert books.by_account()["511"] == "-250000"


@pytest.mark.parametrize("document", [
    money(1, 1500, "1121", "131"), money(3, 1510, "131", "1121"),
    voucher(13, 3537, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000,
                                  **{**SALE_ACCOUNTS, "debit_account": "1121"})]),
], ids=["ba_deposit", "ba_withdraw", "sa_voucher_3537"])
def test_a_bank_document_must_name_a_bank_account_of_the_company(books, document):
    assert "a bank document needs bank_account_number" in books.refused(document)
    unknown = dict(document, bank_account_number="999999")
    assert "bank_account_number 999999 is not a bank account of the company" in books.refused(unknown)
    books.post(dict(document, bank_account_number=BANK))


@pytest.mark.parametrize("document, says", [
    (money(5, 1010, "1121", "131"), "the debit_account of a cash document is a bank account (1121)"),
    (money(4, 1020, "131", "1121"), "the credit_account of a cash document is a bank account (1121)"),
    (voucher(13, 3531, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000,
                                   **{**SALE_ACCOUNTS, "debit_account": "1121"})]),
     "the debit_account of a cash document is a bank account (1121)"),
    (money(1, 1500, "1111", "131", bank_account_number=BANK),
     "the debit_account of a bank document is cash (1111)"),
    (money(3, 1510, "131", "1111", bank_account_number=BANK),
     "the credit_account of a bank document is cash (1111)"),
    (voucher(13, 3537, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000,
                                   **{**SALE_ACCOUNTS, "debit_account": "1111"})],
             bank_account_number=BANK),
     "the debit_account of a bank document is cash (1111)"),
], ids=["ca_receipt", "ca_payment", "sa_voucher_3531", "ba_deposit", "ba_withdraw", "sa_voucher_3537"])
def test_cash_and_bank_documents_keep_to_their_own_money(books, document, says):
    assert says in books.refused(document)


def test_an_amount_with_no_account_to_post_to_is_refused_not_left_unbalanced(books):
    no_vat = {k: v for k, v in SALE_ACCOUNTS.items() if k != "vat_account"}
    message = books.refused(voucher(13, 3530, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000, **no_vat)]))
    assert "line 1: vat_amount 20000 has no vat_account to post to; the entry would not balance" in message
    no_cost = {k: v for k, v in SALE_ACCOUNTS.items() if k != "cost_account"}
    message = books.refused(voucher(13, 3530, "BH", [line("AO-THUN-S", 1, 250000, 0, 20000, **no_cost)],
                                    refno="HRV2", is_sale_with_outward=True))
    assert "line 1: the goods line moves stock" in message and "cost_account" in message
    assert books.ledger()["journal"] == []
