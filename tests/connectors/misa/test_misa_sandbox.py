"""The sandbox validates like MISA: raw HTTP against its real routes, no client of ours."""
from __future__ import annotations

import json

import pytest

from hexaflow.connectors.misa.ids import org_refid

from misa_helpers import sales_voucher


def _outcome(raw, admin, voucher, dictionary=()) -> dict:
    answer = raw.call("save", {"voucher": [voucher], "dictionary": list(dictionary)})
    assert answer["Success"] is True                # save only queues
    admin.drain()
    return admin.requests()[voucher["org_refid"]]


def test_a_balanced_voucher_is_accepted(raw, admin):
    request = _outcome(raw, admin, sales_voucher(1, [("AO-THUN-S", 2, 250000),
                                                     ("HOP-QUA", 1, 45000)], discount_rate=10))
    assert request["status"] == "accepted" and request["errors"] == []
    assert set(request) == {"org_refid", "voucher_type", "reftype", "refno_finance",
                            "org_refno", "status", "errors", "payload", "references"}


def test_an_unbalanced_voucher_is_rejected(raw, admin):
    request = _outcome(raw, admin, sales_voucher(2, [("AO-THUN-S", 2, 250000)], balanced=False))
    assert request["status"] == "rejected"
    assert request["errors"][0]["error_code"] == "InvalidParam"
    assert "total_amount" in request["errors"][0]["error_message"]


def test_a_line_total_mismatch_is_rejected(raw, admin):
    voucher = sales_voucher(3, [("AO-THUN-S", 2, 250000)])
    voucher["total_vat_amount"] += 1
    voucher["total_amount"] += 1
    errors = _outcome(raw, admin, voucher)["errors"]
    assert any("total_vat_amount" in e["error_message"] for e in errors)


def test_an_unknown_item_code_is_rejected_unless_created_in_the_same_call(raw, admin):
    voucher = sales_voucher(4, [("KHONG-CO", 1, 1000)])
    request = _outcome(raw, admin, voucher)
    assert request["status"] == "rejected"
    assert "KHONG-CO" in request["errors"][0]["error_message"]
    entry = {"dictionary_type": 3, "inventory_item_code": "KHONG-CO",
             "inventory_item_name": "Hàng mới", "unit_name": "Cái"}
    assert _outcome(raw, admin, voucher, [entry])["status"] == "accepted"


@pytest.mark.parametrize("change, words", [
    (lambda v: v.update(account_object_code="NOBODY"), "NOBODY"),
    (lambda v: v["detail"][0].update(stock_code="KHO_XYZ"), "KHO_XYZ"),
    (lambda v: v["detail"][0].update(vat_rate=7), "vat_rate"),
    (lambda v: v.pop("refdate"), "refdate"),
    (lambda v: v.update(voucher_type=99), "voucher_type"),
])
def test_what_misa_refuses_is_rejected(raw, admin, change, words):
    voucher = sales_voucher(5, [("AO-THUN-S", 1, 250000)])
    change(voucher)
    request = _outcome(raw, admin, voucher)
    assert request["status"] == "rejected"
    assert any(words in e["error_message"] for e in request["errors"])


def test_cash_vouchers_must_total_their_lines(raw, admin):
    ref = org_refid("shop1", "cash_payment", 1)
    voucher = {"voucher_type": 4, "reftype": 1020, "org_refid": ref, "auto_refno": True,
               "refdate": "2026-05-21T00:00:00+07:00", "account_object_code": "KH00001",
               "total_amount": 550000,
               "detail": [{"description": "Hoàn tiền", "debit_account": "131",
                           "credit_account": "1111", "amount": 500000}]}
    assert _outcome(raw, admin, voucher)["status"] == "rejected"
    voucher["total_amount"] = 500000
    assert _outcome(raw, admin, voucher)["status"] == "accepted"


def test_a_duplicate_voucher_number_is_rejected_and_switchable(raw, admin):
    assert _outcome(raw, admin, sales_voucher(6, [("HOP-QUA", 1, 45000)]))["status"] == "accepted"
    other = sales_voucher(7, [("HOP-QUA", 1, 45000)])
    other["refno_finance"] = "BH_6"
    assert _outcome(raw, admin, other)["status"] == "rejected"
    admin.post("options", {"reject_duplicate_refno": False})
    assert _outcome(raw, admin, other)["status"] == "accepted"


def test_limits_answer_invalid_param(raw):
    vouchers = [sales_voucher(n, [("HOP-QUA", 1, 45000)]) for n in range(101)]
    assert raw.call("save", {"voucher": vouchers})["ErrorCode"] == "InvalidParam"
    entries = [{"dictionary_type": 6, "unit_name": f"U{n}"} for n in range(201)]
    assert raw.call("save_dictionary", {"dictionary": entries})["ErrorCode"] == "InvalidParam"
    answer = raw.call("get_dictionary", {"data_type": 2, "skip": 0, "take": 101})
    assert answer["Success"] is False and answer["ErrorCode"] == "InvalidParam"
    answer = raw.call("get_dictionary", {"data_type": 2, "skip": 0, "take": 100})
    assert isinstance(answer["Data"], str) and answer["CustomData"]["LastSyncTime"]


def test_empty_data_holds_only_the_company_setup(sandbox, admin):
    admin.post("reset", {"data": "empty"})
    dictionary = admin.get("dictionary")
    assert dictionary["account_objects"] == []
    assert [i["inventory_item_code"] for i in dictionary["inventory_items"]] == ["DV_VANCHUYEN", "DV_GIAMGIA", "DV_PHIGIULAI"]
    assert len(dictionary["stocks"]) == 3 and len(dictionary["units"]) == 6
    assert admin.get("stock")["balances"] == []


def test_org_refid_is_the_engines_uuid5_recipe():
    import uuid

    from hexaflow.functions import FunctionContext, Library
    value = org_refid("shop1", "sales_voucher", 1001)
    assert value == str(uuid.uuid5(uuid.UUID("1bf32068-4ee3-5dcd-98b1-27fb7c01d8ae"),
                                   "shop1|sales_voucher|1001"))
    assert value == org_refid("shop1", "sales_voucher", "1001")
    assert value != org_refid("shop2", "sales_voucher", 1001)
    assert value == Library(FunctionContext()).uuid5("shop1", "sales_voucher", 1001)


def test_a_voucher_renumbered_frees_its_old_number(raw, admin):
    first = sales_voucher(8, [("HOP-QUA", 1, 45000)])
    assert _outcome(raw, admin, first)["status"] == "accepted"
    first["refno_finance"] = "BH_8_NEW"
    assert _outcome(raw, admin, first)["status"] == "accepted"
    other = sales_voucher(9, [("HOP-QUA", 1, 45000)])
    other["refno_finance"] = "BH_8"                 # no longer anyone's number
    assert _outcome(raw, admin, other)["status"] == "accepted"
    again = sales_voucher(10, [("HOP-QUA", 1, 45000)])
    again["refno_finance"] = "BH_8_NEW"
    assert _outcome(raw, admin, again)["status"] == "rejected"


def test_stats_count_what_was_received_and_how_often(raw, admin):
    voucher = sales_voucher(11, [("HOP-QUA", 1, 45000)])
    customer = {"dictionary_type": 1, "account_object_code": "HRV-11",
                "account_object_name": "Lan", "is_customer": True}
    _outcome(raw, admin, voucher, [customer])
    _outcome(raw, admin, voucher)
    stats = admin.get("stats")
    assert stats["requests"] == 1 and stats["by_status"] == {"accepted": 1}
    assert stats["vouchers_received"] == 2 and stats["vouchers_received_twice"] == 1
    assert stats["dictionary_received"] == 1 and stats["dictionary_received_twice"] == 0
    assert stats["calls"]["save"] == 2 and stats["queued_calls"] == 0


def test_callback_results_page_through_their_date_range(raw, admin):
    for n in range(3):
        _outcome(raw, admin, sales_voucher(20 + n, [("HOP-QUA", 1, 45000)]))
    window = {"from_date": "2020-01-01T00:00:00+07:00", "to_date": "2099-01-01T00:00:00+07:00"}

    def page(skip, take, **dates):
        answer = raw.call("get_call_back_detail_error", {**window, **dates, "skip": skip,
                                                          "take": take})
        return [row["org_refid"] for row in json.loads(answer["Data"])]
    every = page(0, 100)
    assert len(every) == 3
    assert page(0, 2) + page(2, 2) == every and page(3, 2) == []
    assert page(0, 100, from_date="2099-01-01T00:00:00+07:00",
                to_date="2099-02-01T00:00:00+07:00") == []
