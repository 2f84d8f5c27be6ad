"""Rate limits, injected faults and credential errors, over real HTTP."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hexaflow.connector import ConfigError, ConnectorContext, ConnectorError
from hexaflow.connectors.haravan import HaravanConnector
from hexaflow.runner import Connectors


def _burst(connector, calls: int, threads: int = 8) -> list[int]:
    def one(_):
        status, _body = connector.client.request("GET", "/locations.json", scope="com.read_shop")
        return status
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(calls)))


def test_300_call_burst_stays_under_the_limit(make_shop):
    # The real bucket (80, 4/s) would make this burst last a minute; the same bucket drained
    # ten times faster keeps the test short and the arithmetic identical.
    shop = make_shop(data="empty", rate_limit=True, leak_rate=40.0)
    with shop.connector(HARAVAN_CALLS_PER_SECOND="40") as connector:
        statuses = _burst(connector, 300)
    assert statuses == [200] * 300
    assert shop.app.calls >= 300
    assert shop.app.throttled <= 5


def test_real_bucket_numbers_throttle_the_client_not_the_server(make_shop):
    shop = make_shop(data="empty", rate_limit=True)          # 80 calls, 4/s
    with shop.connector() as connector:
        started = time.monotonic()
        statuses = _burst(connector, 90, threads=4)
        elapsed = time.monotonic() - started
    assert statuses == [200] * 90
    assert shop.app.throttled <= 2
    assert elapsed >= 2.0          # the client waited for the bucket to drain


def test_429_retry_after_is_honoured(make_shop, caplog, read_all):
    shop = make_shop(orders=120)
    shop.admin("POST", "/faults", json={"error_rate": 0.3, "kinds": ["429"], "seed": 3})
    with caplog.at_level(logging.WARNING, logger="hexaflow.http"):
        with shop.connector() as connector:
            _, orders = read_all(connector, "orders")
    assert len({o["id"] for o in orders}) == 120
    assert any("HTTP 429" in r.getMessage() for r in caplog.records)


def test_full_read_survives_20_percent_faults(make_shop, caplog, read_all):
    shop = make_shop(orders=500)
    shop.admin("POST", "/faults", json={"error_rate": 0.2, "seed": 7, "timeout_ms": 400,
                                        "kinds": ["500", "502", "503", "timeout", "drop"]})
    with caplog.at_level(logging.WARNING, logger="hexaflow.http"):
        with shop.connector(HARAVAN_TIMEOUT_SECONDS="0.2", HARAVAN_MAX_ATTEMPTS="8") as connector:
            _, orders = read_all(connector, "orders")
            retries = connector.client.http.retries
    ids = [o["id"] for o in orders]
    assert len(ids) == len(set(ids)) == 500
    injected = shop.admin("GET", "/faults").json()["injected"]
    assert sum(injected.values()) >= 1 and retries >= 1
    assert retries <= 8 * len([1 for m, p, q in shop.app.requests if p == "/com/orders.json"])
    logged = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(logged) == retries
    assert all(shop.token not in line for line in logged)


def test_wrong_token_fails_fast_naming_the_variable(shop, read_all):
    connector = HaravanConnector(ConnectorContext(config={
        "HARAVAN_BASE_URL": shop.url, "HARAVAN_TOKEN": "wrong-secret-value"}))
    started = time.monotonic()
    with pytest.raises(ConnectorError) as err:
        read_all(connector, "orders")
    assert time.monotonic() - started < 2
    message = str(err.value)
    assert "HARAVAN_TOKEN" in message and "HARAVAN_BASE_URL" in message
    assert "wrong-secret-value" not in message
    assert len(shop.app.requests) == 1      # a 401 is never retried


def test_missing_token_is_a_config_error(monkeypatch):
    monkeypatch.delenv("HARAVAN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="HARAVAN_TOKEN"):
        HaravanConnector(ConnectorContext(config={"HARAVAN_BASE_URL": "http://127.0.0.1:9"}))


def test_token_from_the_environment_is_used(shop, monkeypatch, read_all, tmp_path):
    # The engine hands the environment to the connector as its config ...
    monkeypatch.setenv("HARAVAN_TOKEN", shop.token)
    monkeypatch.setenv("HARAVAN_BASE_URL", shop.url)
    connectors = Connectors("t", tmp_path)
    try:
        assert len(read_all(connectors.get("haravan"), "locations")[1]) == 3
    finally:
        connectors.close()


def test_the_connector_itself_never_reads_the_environment(shop, monkeypatch):
    # ... and the connector reads only that config, never the process environment.
    monkeypatch.setenv("HARAVAN_TOKEN", shop.token)
    with pytest.raises(ConfigError, match="HARAVAN_TOKEN"):
        HaravanConnector(ConnectorContext())


def test_missing_scope_is_named(make_shop, read_all):
    shop = make_shop(scopes=["com.read_customers", "com.read_shop"])
    with shop.connector() as connector:
        with pytest.raises(ConnectorError, match="com.read_orders"):
            read_all(connector, "orders")
        assert len(read_all(connector, "customers")[1]) == 41


def test_unreachable_host_names_the_base_url(read_all):
    connector = HaravanConnector(ConnectorContext(config={
        "HARAVAN_BASE_URL": "http://127.0.0.1:9", "HARAVAN_TOKEN": "t-unreachable",
        "HARAVAN_MAX_ATTEMPTS": "2", "HARAVAN_RETRY_BASE_DELAY": "0.01"}))
    with pytest.raises(ConnectorError, match="HARAVAN_BASE_URL"):
        read_all(connector, "orders")


def test_a_new_client_assumes_a_full_bucket_and_gets_no_429(make_shop, read_all):
    # Another client (serve, an earlier run) left the shop's bucket full: a client that
    # assumed an empty one would be refused at once; the default start waits for one slot.
    shop = make_shop(orders=120, rate_limit=True)
    shop.admin("POST", "/state", json={"bucket_level": 80, "reset_counters": True})
    with shop.connector(HARAVAN_BUCKET_AT_START="full") as connector:
        _, orders = read_all(connector, "orders")
    assert len(orders) == 120
    stats = shop.admin("GET", "/stats").json()
    assert stats["throttled"] == 0
    assert stats["requests"]["GET /com/orders.json"] == stats["calls"] == 3


def test_a_client_that_assumes_an_empty_bucket_is_refused_by_a_full_one(make_shop, read_all):
    shop = make_shop(orders=60, rate_limit=True)
    shop.admin("POST", "/state", json={"bucket_level": 80, "reset_counters": True})
    with shop.connector(HARAVAN_BUCKET_AT_START="empty") as connector:
        _, orders = read_all(connector, "orders")
    assert len(orders) == 60
    assert shop.admin("GET", "/stats").json()["throttled"] >= 1


def test_the_first_count_from_the_server_replaces_the_start_guess(make_shop):
    shop = make_shop(data="empty", rate_limit=True)
    started = time.monotonic()
    with shop.connector(HARAVAN_BUCKET_AT_START="full") as connector:
        statuses = _burst(connector, 20, threads=1)
        elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    # One wait of 1/4 s for the first call; the header then says the bucket is nearly empty.
    assert 0.2 <= elapsed < 2.0


def test_rate_limit_off_removes_the_client_bucket(make_shop):
    shop = make_shop(data="empty")
    with shop.connector(HARAVAN_RATE_LIMIT="off") as connector:
        assert connector.client.limiter is None
        assert _burst(connector, 100) == [200] * 100
    with pytest.raises(ConfigError, match="HARAVAN_RATE_LIMIT"):
        shop.connector(HARAVAN_RATE_LIMIT="sometimes")
