"""The callback verifier: genuine callbacks for us become results; forged ones and those for
another application or company change nothing; what cannot be undone waits for MISA to
confirm it; a callback is known by the digest of what its signature covers."""
from __future__ import annotations

import json

import httpx
import pytest

from hexaflow.connector import ACCEPTED, CONFLICT, DELETED, GENERATED, POSTED, REJECTED
from hexaflow.connectors.misa import CallbackError, parse_callback
from hexaflow.connectors.misa.callbacks import build_callback, sign

from misa_helpers import APP_ID, ORG, make_connector, sales_voucher, voucher_item, wait_for

KEY = "app-key"


def _callback(data_type: int, data, key: str = KEY, **fields) -> dict:
    return {**build_callback(data_type, data, app_id=APP_ID, org_company_code=ORG, key=key),
            **fields}


def _body(data_type: int, data, key: str = KEY, **fields) -> bytes:
    return json.dumps(_callback(data_type, data, key, **fields)).encode()


def _parse(raw: bytes) -> list:
    return parse_callback(raw, KEY, app_id=APP_ID, org_company_code=ORG).results


def test_each_data_type_maps_to_a_lifecycle_step():
    saved = [{"org_refid": "r1", "success": True},
             {"org_refid": "r2", "success": False, "error_code": "InvalidParam",
              "error_message": "Mã hàng <X> không tồn tại"},
             {"org_refid": "r3", "success": False, "error_code": "IsCreatedVoucher",
              "error_message": "Đã sinh chứng từ kế toán, không thể cập nhật được."}]
    results = _parse(_body(1, saved))
    assert [(r.target_ref, r.status, r.code) for r in results] == [
        ("r1", ACCEPTED, None), ("r2", REJECTED, "InvalidParam"),
        ("r3", CONFLICT, "IsCreatedVoucher")]
    assert results[1].message == "Mã hàng <X> không tồn tại"
    assert _parse(_body(2, [{"org_refid": "r1", "success": True}]))[0].status == DELETED
    assert _parse(_body(18, [{"org_refid": "r1", "success": True}]))[0].status == GENERATED
    posted = {"voucher": [{"org_refid": "r1"}], "custom_param": {"ModelState": 7}}
    assert _parse(_body(22, posted))[0].status == POSTED
    edited = {"voucher": [{"org_refid": "r1"}], "custom_param": {"ModelState": 2}}
    assert _parse(_body(22, edited)) == []


def test_pascal_case_bodies_are_read_too():
    raw = json.dumps([{"OrgRefID": "x", "org_refid": "r9", "Success": True}])
    body = {"Success": True, "Signature": sign(raw, KEY), "DataType": 1, "Data": raw,
            "AppId": APP_ID, "OrgCompanyCode": ORG}
    assert _parse(json.dumps(body).encode())[0].target_ref == "r9"


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(signature=sign(b["data"], "someone-else")),
    lambda b: b.pop("signature"),
    lambda b: b.update(data=b["data"].replace("true", "false")),
])
def test_a_bad_signature_is_refused(mutate):
    body = json.loads(_body(1, [{"org_refid": "r1", "success": True}]))
    mutate(body)
    with pytest.raises(CallbackError):
        _parse(json.dumps(body).encode())


@pytest.mark.parametrize("field, value, says", [
    ("app_id", "another-app", "callback is for another application: its app_id is not "
                              "MISA_APP_ID; nothing was applied"),
    ("app_id", None, "its app_id is not MISA_APP_ID"),
    ("org_company_code", "0399999999", "callback is for another company: its "
                                       "org_company_code is not MISA_ORG_COMPANY_CODE"),
    ("org_company_code", None, "its org_company_code is not MISA_ORG_COMPANY_CODE"),
])
def test_a_genuine_signature_for_another_app_or_company_is_refused(field, value, says):
    # The signature covers `data` only: the envelope's app id and company are checked apart.
    raw = _body(1, [{"org_refid": "r1", "success": True}], **{field: value})
    with pytest.raises(CallbackError) as refused:
        _parse(raw)
    assert says in str(refused.value)
    assert APP_ID not in str(refused.value)      # by default the app id is the signing key


def test_the_digest_is_of_the_signed_data_whatever_else_a_sender_changes():
    data = [{"org_refid": "r1", "success": True, "session_id": "s-1"}]
    genuine = parse_callback(_body(1, data), KEY, app_id=APP_ID, org_company_code=ORG)
    retyped = dict(_callback(1, data), data_type=18, error_message="padding")
    again = parse_callback(json.dumps(retyped, indent=2).encode(), KEY, app_id=APP_ID,
                           org_company_code=ORG)
    assert again.digest == genuine.digest and again.results[0].status == GENERATED
    other = parse_callback(_body(1, [dict(data[0], session_id="s-2")]), KEY, app_id=APP_ID,
                           org_company_code=ORG)
    assert other.digest != genuine.digest


def test_receive_holds_back_what_cannot_be_undone_until_a_poll_confirms_it(sandbox):
    connector = make_connector(sandbox[1].url, MISA_CALLBACK_KEY=KEY)
    try:
        for data_type, kept, held in ((1, ACCEPTED, None), (18, None, GENERATED),
                                      (2, None, DELETED)):
            received = connector.receive(_body(data_type, [{"org_refid": "r1",
                                                            "success": True}]), {})
            assert received.status == 200 and received.body == {"Success": True}
            assert [r.status for r in received.results] == ([kept] if kept else [])
            assert [r.status for r in received.to_confirm] == ([held] if held else [])
            assert received.digest
        posted = {"voucher": [{"org_refid": "r1"}], "custom_param": {"ModelState": 7}}
        received = connector.receive(_body(22, posted), {})
        assert [r.status for r in received.results] == [POSTED] and not received.to_confirm
        # A failure of a delete is applied as it comes (it changes nothing for good).
        failed = [{"org_refid": "r1", "success": False, "error_code": "VoucherNotFound"}]
        received = connector.receive(_body(2, failed), {})
        assert [r.status for r in received.results] == [REJECTED] and not received.to_confirm
        other = connector.receive(_body(1, [{"org_refid": "r1", "success": True}],
                                        app_id="another-app"), {})
        assert other.refused and other.status == 400 and not other.results and not other.digest
    finally:
        connector.close()


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
