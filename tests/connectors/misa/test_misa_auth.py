"""Connect, use, token expiry and reconnect, and failing fast on bad credentials."""
from __future__ import annotations

import time

import httpx
import pytest

from hexaflow.connector import ConfigError, ConnectorContext
from hexaflow.connectors.misa import MisaConnector
from hexaflow.connectors.misa.errors import MisaAuthError

from misa_helpers import ACCESS_CODE, APP_ID, ORG, make_connector


def test_connects_once_and_reuses_the_token(connector):
    assert len([r for p in connector.read("stocks", {}) for r in p.records]) == 3
    assert len([r for p in connector.read("units", {}) for r in p.records]) == 6
    assert connector.client.connects == 1


def test_an_expired_token_is_renewed_before_use(sandbox, connector, admin):
    admin.post("faults", {"token_ttl_s": 1})
    list(connector.read("stocks", {}))
    time.sleep(1.2)
    assert [r["stock_code"] for p in connector.read("stocks", {}) for r in p.records]
    assert connector.client.connects == 2


def test_a_token_the_server_expired_is_replaced_transparently(connector, admin):
    list(connector.read("stocks", {}))
    admin.post("tokens/expire")        # the client still believes its token is good for 12 h
    records = [r for p in connector.read("stocks", {}) for r in p.records]
    assert len(records) == 3
    assert connector.client.connects == 2


def test_the_sandbox_answers_expired_and_invalid_tokens_with_misa_codes(sandbox, admin):
    url = sandbox[1].url + "/apir/sync/actopen/get_dictionary"
    body = {"app_id": APP_ID, "data_type": 3, "skip": 0, "take": 10}
    answer = httpx.post(url, json=body, headers={"X-MISA-AccessToken": "nope"}).json()
    assert answer["Success"] is False and answer["ErrorCode"] == "InvalidToken"
    admin.post("faults", {"token_ttl_s": 0.2})
    token = httpx.post(sandbox[1].url + "/api/oauth/actopen/connect", json={
        "app_id": APP_ID, "access_code": ACCESS_CODE, "org_company_code": ORG}).json()
    assert token["Success"] and isinstance(token["Data"], str)   # Data is a JSON string
    import json
    access = json.loads(token["Data"])["access_token"]
    time.sleep(0.3)
    answer = httpx.post(url, json=body, headers={"X-MISA-AccessToken": access})
    assert answer.status_code == 200                   # business errors are HTTP 200
    assert answer.json()["ErrorCode"] == "ExpiredToken"


def test_a_wrong_app_id_fails_fast_naming_the_variable(sandbox):
    conn = make_connector(sandbox[1].url, MISA_APP_ID="not-my-app")
    started = time.monotonic()
    with pytest.raises(MisaAuthError) as info:
        list(conn.read("stocks", {}))
    assert time.monotonic() - started < 2                # no retries on a business error
    assert info.value.code == "InvalidAppID"
    assert "MISA_APP_ID" in str(info.value)
    assert ACCESS_CODE not in str(info.value)
    conn.close()


def test_a_wrong_access_code_names_the_variable_never_the_value(sandbox):
    conn = make_connector(sandbox[1].url, MISA_ACCESS_CODE="wrong-access-code-999")
    with pytest.raises(MisaAuthError) as info:
        list(conn.read("items", {}))
    assert "MISA_ACCESS_CODE" in str(info.value)
    assert "wrong-access-code-999" not in str(info.value)
    conn.close()


def test_a_wrong_company_code_names_its_variable(sandbox):
    conn = make_connector(sandbox[1].url, MISA_ORG_COMPANY_CODE="999")
    with pytest.raises(MisaAuthError) as info:
        list(conn.read("items", {}))
    assert info.value.code == "InvalidParam"
    assert "MISA_ORG_COMPANY_CODE" in str(info.value)
    conn.close()


def test_missing_settings_name_the_variables(monkeypatch):
    for name in ("MISA_APP_ID", "MISA_ACCESS_CODE", "MISA_ORG_COMPANY_CODE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        MisaConnector(ConnectorContext(config={"MISA_APP_ID": "x"}))
    assert "MISA_ACCESS_CODE" in str(info.value) and "MISA_ORG_COMPANY_CODE" in str(info.value)


def test_settings_repr_hides_the_access_code(connector):
    assert ACCESS_CODE not in repr(connector.settings)


def test_a_wrong_base_url_names_its_variable(sandbox):
    from hexaflow.connectors.misa.errors import MisaTransportError
    conn = make_connector(sandbox[1].url + "/not-misa")
    with pytest.raises(MisaTransportError) as info:
        list(conn.read("stocks", {}))
    assert "MISA_BASE_URL" in str(info.value)
    conn.close()


def test_the_optional_client_rate_limit_still_reads(sandbox):
    conn = make_connector(sandbox[1].url, MISA_MAX_CALLS_PER_S="20")
    assert len([r for p in conn.read("units", {}) for r in p.records]) == 6
    conn.close()
