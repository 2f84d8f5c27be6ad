"""Settings, auth styles and token lifetimes (no network)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hexaflow.connector import ConfigError
from hexaflow.connectors.misa.client import (GATEWAY, TICKS_AT_EPOCH, MisaClient, MisaSettings,
                                             token_expiry)

BASE = {"MISA_APP_ID": "app", "MISA_ACCESS_CODE": "code", "MISA_ORG_COMPANY_CODE": "0312"}


def test_classic_is_the_default_style():
    settings = MisaSettings.from_config(BASE)
    client = MisaClient(settings)
    assert settings.base_url == "https://actapp.misa.vn"
    assert client._function_path("save") == "/apir/sync/actopen/save"
    assert client.base_body() == {"app_id": "app", "org_company_code": "0312"}
    assert settings.signing_key == "app"
    client.close()


def test_the_gateway_style_is_switchable():
    with pytest.raises(ConfigError, match="MISA_CLIENT_ID"):
        MisaSettings.from_config({**BASE, "MISA_AUTH_STYLE": "gateway"})
    settings = MisaSettings.from_config({**BASE, "MISA_AUTH_STYLE": "gateway",
                                         "MISA_CLIENT_ID": "cid"})
    client = MisaClient(settings)
    assert settings.auth_style == GATEWAY
    assert settings.base_url == "https://developer.misa.vn/apis"
    assert client._function_path("get_dictionary") == "/amiskt/v1/get_dictionary"
    assert "app_id" not in client.base_body()
    assert client._auth_headers()["ClientID"] == "cid"
    client.close()


def test_an_unknown_style_is_a_config_error():
    with pytest.raises(ConfigError, match="MISA_AUTH_STYLE"):
        MisaSettings.from_config({**BASE, "MISA_AUTH_STYLE": "oauth"})


def test_token_expiry_reads_offsets_vietnam_time_and_ticks():
    now = datetime(2026, 5, 20, 3, 0, tzinfo=timezone.utc).timestamp()
    with_offset = token_expiry({"expired_time": "2026-05-20T15:00:00+07:00"}, now)
    assert with_offset == now + 5 * 3600
    naive = token_expiry({"expired_time": "2026-05-20T15:00:00.0000000"}, now)
    assert naive == with_offset                       # offset-less means Vietnam time
    ticks = TICKS_AT_EPOCH + int((now + 3600) * 10_000_000)
    assert token_expiry({"expired_time_ticks": ticks}, now) == pytest.approx(now + 3600)
    assert token_expiry({"expired_time": "2030-01-01T00:00:00+07:00"}, now) == now + 12 * 3600
