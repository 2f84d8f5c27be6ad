"""The callback verifier: genuine callbacks become results, forged ones change nothing."""
from __future__ import annotations

import json

import httpx
import pytest

from hexaflow.connector import ACCEPTED, CONFLICT, DELETED, GENERATED, POSTED, REJECTED
from hexaflow.connectors.misa import CallbackError, parse_callback
from hexaflow.connectors.misa.callbacks import build_callback, sign

from misa_helpers import APP_ID, ORG, sales_voucher, voucher_item, wait_for

KEY = "app-key"


def _body(data_type: int, data, key: str = KEY) -> bytes:
    return json.dumps(build_callback(data_type, data, app_id="a", org_company_code=ORG,
                                     key=key)).encode()


def test_each_data_type_maps_to_a_lifecycle_step():
    saved = [{"org_refid": "r1", "success": True},
             {"org_refid": "r2", "success": False, "error_code": "InvalidParam",
              "error_message": "Mã hàng <X> không tồn tại"},
             {"org_refid": "r3", "success": False, "error_code": "IsCreatedVoucher",
              "error_message": "Đã sinh chứng từ kế toán, không thể cập nhật được."}]
    results = parse_callback(_body(1, saved), KEY)
    assert [(r.target_ref, r.status, r.code) for r in results] == [
        ("r1", ACCEPTED, None), ("r2", REJECTED, "InvalidParam"),
        ("r3", CONFLICT, "IsCreatedVoucher")]
    assert results[1].message == "Mã hàng <X> không tồn tại"
    assert parse_callback(_body(2, [{"org_refid": "r1", "success": True}]), KEY)[0].status \
        == DELETED
    assert parse_callback(_body(18, [{"org_refid": "r1", "success": True}]), KEY)[0].status \
        == GENERATED
    posted = {"voucher": [{"org_refid": "r1"}], "custom_param": {"ModelState": 7}}
    assert parse_callback(_body(22, posted), KEY)[0].status == POSTED
    edited = {"voucher": [{"org_refid": "r1"}], "custom_param": {"ModelState": 2}}
    assert parse_callback(_body(22, edited), KEY) == []


def test_pascal_case_bodies_are_read_too():
    raw = json.dumps([{"OrgRefID": "x", "org_refid": "r9", "Success": True}])
    body = {"Success": True, "Signature": sign(raw, KEY), "DataType": 1, "Data": raw}
    assert parse_callback(json.dumps(body).encode(), KEY)[0].target_ref == "r9"


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(signature=sign(b["data"], "someone-else")),
    lambda b: b.pop("signature"),
    lambda b: b.update(data=b["data"].replace("true", "false")),
])
def test_a_bad_signature_is_refused(mutate):
    body = json.loads(_body(1, [{"org_refid": "r1", "success": True}]))
    mutate(body)
    with pytest.raises(CallbackError):
        parse_callback(json.dumps(body).encode(), KEY)


def test_a_forged_callback_is_refused_and_changes_nothing(connector, admin, receiver):
    app, url = receiver
    admin.post("callback", {"url": url, "enabled": True})
    voucher = sales_voucher(11, [("AO-THUN-L", 1, 250000)], balanced=False)
    ref = voucher["org_refid"]
    connector.write([voucher_item(voucher)])
    wait_for(lambda: ref in app.latest())
    assert app.latest()[ref].status == REJECTED
    before_results, before_requests = list(app.results), admin.requests()

    forged = build_callback(1, [{"org_refid": ref, "success": True}], app_id=APP_ID,
                            org_company_code=ORG, key="guessed-key")
    answer = httpx.post(url, json=forged)
    assert answer.status_code == 400
    assert answer.json()["Success"] is False and answer.json()["ErrorCode"] == "InvalidParam"
    assert app.refused == 1
    assert app.results == before_results
    assert app.latest()[ref].status == REJECTED
    assert admin.requests() == before_requests


def test_the_sandbox_signs_with_a_configurable_key(connector, admin, receiver):
    app, url = receiver
    admin.post("callback", {"url": url, "enabled": True, "key": "public-key-from-misa"})
    voucher = sales_voucher(12, [("AO-THUN-L", 1, 250000)])
    connector.write([voucher_item(voucher)])
    wait_for(lambda: app.refused == 1)        # our receiver still expects the app_id key
    assert app.results == []
