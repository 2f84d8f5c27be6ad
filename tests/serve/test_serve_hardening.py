"""``hexaflow serve`` as a hostile or a busy client meets it (issue 15, items 3 and 4): many
deliveries at once, ambiguous HTTP framing, slow clients, login guessing, sessions and CSRF,
the tenant in the hook's path, /metrics and JSON logs. Loopback only; every wait is bounded.
"""
from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from hexaflow import serve_http
from hexaflow.runner import FlowError, load_plan
from hexaflow.serve import HookServer, JsonLogFormatter, serve_command
from hexaflow.state import open_store
from hexaflow.statuspage import COOKIE
from hexaflow.statuspage_access import FREE_FAILURES_PER_CLIENT, FREE_FAILURES_PER_TOKEN, LoginThrottle

from serve_kit import CREDENTIALS, MAPPINGS, TENANT, TIMEOUT, wait_for

TOKEN = "hardening-admin-token-7f3a9c21be"
OFFLINE = {**CREDENTIALS, "HARAVAN_BASE_URL": "http://127.0.0.1:9", "MISA_BASE_URL": "http://127.0.0.1:9",
           "HEXAFLOW_ADMIN_TOKEN": TOKEN}
SALES_ORDER = 20


@pytest.fixture
def offline(tmp_path: Path):
    """serve with the orders flow, settings that reach nothing and the status page on; no run
    is ever asked for here (no delivery is valid), so nothing leaves the machine."""
    server = HookServer.single([load_plan(MAPPINGS / "orders.yaml")], tenant=TENANT, config=OFFLINE,
                        state=str(tmp_path / "state.db"), port=0).start()
    try:
        yield server
    finally:
        server.stop(timeout=10)


def _exchange(url: str, raw: bytes, wait_s: float = 10.0) -> bytes:
    """Send ``raw`` on one connection; everything the server answers until it closes it."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=wait_s) as conn:
        conn.sendall(raw)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def _statuses(data: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


# --------------------------------------------------------------------------- framing
def test_chunked_with_a_content_length_is_refused_and_what_it_hides_is_not_a_request(offline):
    hidden = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    smuggle = (b"POST /status/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden)
    data = _exchange(offline.url, smuggle)
    assert _statuses(data) == [400], data
    assert b"Transfer-Encoding and Content-Length" in data and b"connection: close" in data.lower()
    assert b'"ok"' not in data                       # /health was never answered


def test_a_malformed_chunked_body_is_refused_and_nothing_after_it_is_run(offline):
    bad = (b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"zz\r\nabc\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = _exchange(offline.url, bad)
    assert _statuses(data) == [400], data
    assert b'"ok"' not in data


def test_a_slow_body_and_slow_headers_are_cut_off(offline, monkeypatch):
    monkeypatch.setattr(serve_http, "BODY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(serve_http, "HEADERS_TIMEOUT_S", 1.0)
    started = time.monotonic()
    data = _exchange(offline.url, b"POST /hooks/misa HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                                  b"\r\n{\"a\": 1", wait_s=10)
    assert _statuses(data) == [408] and b"did not arrive within 1 s" in data, data
    assert time.monotonic() - started < 8
    # Headers that never end: the connection is closed, no request is ever made of them.
    started = time.monotonic()
    assert _exchange(offline.url, b"POST /hooks/misa HTTP/1.1\r\nHost: x\r\n", wait_s=10) == b""
    assert time.monotonic() - started < 8
    # A connection that never sends anything is closed too.
    assert _exchange(offline.url, b"", wait_s=10) == b""


# --------------------------------------------------------------------------- login, sessions, CSRF
def _client(address: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False,
                        transport=httpx.HTTPTransport(local_address=address))


def test_a_login_brute_force_is_throttled_per_client_with_retry_after(offline):
    with _client() as http:
        for n in range(FREE_FAILURES_PER_CLIENT):
            answer = http.post(offline.url + "/status/login", data={"token": f"guess-{n}"})
            assert answer.status_code == 401, (n, answer.status_code)
        for given in ("guess-next", TOKEN):          # while it waits, even the token is not tried
            throttled = http.post(offline.url + "/status/login", data={"token": given})
            assert throttled.status_code == 429, throttled.text
            assert int(throttled.headers["retry-after"]) >= 1
            assert 'id="login-throttled"' in throttled.text and "set-cookie" not in throttled.headers
        bearer = http.get(offline.url + "/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 429
    with _client("127.0.0.2") as other:             # another address is not held back
        assert other.post(offline.url + "/status/login", data={"token": TOKEN}).status_code == 303


def test_guesses_from_many_addresses_throttle_the_token_itself(offline):
    per_client = FREE_FAILURES_PER_CLIENT - 1
    clients = -(-FREE_FAILURES_PER_TOKEN // per_client)
    guesses = 0
    for c in range(clients):
        with _client(f"127.0.0.{10 + c}") as http:
            for _ in range(per_client):
                if guesses == FREE_FAILURES_PER_TOKEN:
                    break
                answer = http.post(offline.url + "/status/login", data={"token": f"g{guesses}"})
                assert answer.status_code == 401, answer.status_code
                guesses += 1
    with _client("127.0.0.99") as fresh:             # a new address, the right token: it waits
        answer = fresh.post(offline.url + "/status/login", data={"token": TOKEN})
        assert answer.status_code == 429 and answer.headers["retry-after"]


def test_the_same_wrong_token_again_is_no_new_guess_and_backoff_doubles(tmp_path):
    now = [1000.0]
    store = open_store(str(tmp_path / "state.db"))
    store.now = lambda: now[0]            # the store's clock is the throttle's
    throttle = LoginThrottle(store)
    for _ in range(50):
        throttle.failed("a", "stale-token")
    assert throttle.wait("a") == 0
    for n in range(1, FREE_FAILURES_PER_CLIENT):
        throttle.failed("a", f"guess-{n}")
    assert throttle.wait("a") == 1.0
    now[0] += 1.0
    throttle.failed("a", "guess-more")
    assert throttle.wait("a") == 2.0
    throttle.succeeded("a")
    assert throttle.wait("a") == 0
    store.close()


def _login(http: httpx.Client, url: str) -> str:
    answer = http.post(url + "/status/login", data={"token": TOKEN})
    assert answer.status_code == 303, answer.text
    return answer.headers["set-cookie"].split(";")[0].split("=", 1)[1]


def test_logout_ends_the_session_and_needs_the_csrf_token(offline):
    with _client() as http:
        session = _login(http, offline.url)
        page = http.get(offline.url + "/status")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert csrf and csrf != session
        # A form POST without the token (or with another) is refused; the session lives on.
        for form in ({}, {"csrf": "not-the-token"}):
            refused = http.post(offline.url + "/status/logout", data=form)
            assert refused.status_code == 403 and "set-cookie" not in refused.headers, form
        assert http.get(offline.url + "/status").status_code == 200
        out = http.post(offline.url + "/status/logout", data={"csrf": csrf})
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    # The old cookie, kept by whoever had it, no longer opens anything.
    again = httpx.get(offline.url + "/status", headers={"Cookie": f"{COOKIE}={session}"}, timeout=TIMEOUT)
    assert again.status_code == 401 and 'id="login-form"' in again.text


def test_a_form_posted_from_another_site_is_refused(offline):
    with _client() as http:
        _login(http, offline.url)
        page = http.get(offline.url + "/status")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        evil = {"Origin": "https://evil.example"}
        assert http.post(offline.url + "/status/logout", data={"csrf": csrf}, headers=evil).status_code == 403
        assert http.post(offline.url + "/status/login", data={"token": TOKEN}, headers=evil).status_code == 403
        assert http.get(offline.url + "/status").status_code == 200      # still logged in
        own = {"Origin": offline.url}
        assert http.post(offline.url + "/status/logout", data={"csrf": csrf}, headers=own).status_code == 303


@pytest.mark.parametrize("token, why", [("short-token", "it is 11 characters long"),
                                        ("ab" * 20, "it uses only 2 different characters")])
def test_a_weak_admin_token_stops_serve_at_start_with_the_rule(tmp_path, monkeypatch, token, why):
    for name, value in {**OFFLINE, "HEXAFLOW_ADMIN_TOKEN": token,
                        "HEXAFLOW_STATE": str(tmp_path / "state.db")}.items():
        monkeypatch.setenv(name, value)
    out, err, stop = io.StringIO(), io.StringIO(), threading.Event()
    stop.set()
    code = serve_command([str(MAPPINGS / "orders.yaml")], host="127.0.0.1", port=0, interval=0,
                         out=out, err=err, stop=stop)
    assert code == 1, err.getvalue()
    said = err.getvalue()
    assert f"HEXAFLOW_ADMIN_TOKEN is too weak ({why})" in said
    assert "at least 24 characters with at least 10 different ones" in said and "token_urlsafe" in said
    assert token not in said and "listening" not in out.getvalue()


def test_without_the_server_extra_serve_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "hexaflow.serve_http", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)       # as if it were not installed
    with pytest.raises(FlowError, match=re.escape("pip install 'hexaflow[server]'")):
        HookServer.single([], tenant=TENANT, config=OFFLINE, state=str(tmp_path / "state.db"))


# --------------------------------------------------------------------------- tenant, metrics, logs
def test_hooks_with_the_tenant_in_the_path_and_metrics_by_tenant(shop):
    server = shop.serve("orders")
    order = shop.create_order(shop.lan())
    other = shop.http.post(f"{server.url}/hooks/another-shop/haravan", content=b"{}")
    assert other.status_code == 404 and "no tenant 'another-shop' here" in other.json()["error"]
    raw, headers = shop.delivery(order)
    answer = shop.http.post(server.hook_url("haravan", with_tenant=True), content=raw, headers=headers)
    assert server.hook_url("haravan", with_tenant=True).endswith(f"/hooks/{TENANT}/haravan")
    assert answer.status_code == 200, answer.text
    assert [row["record_id"] for row in shop.inbox()] == [str(order["id"])]
    wait_for(lambda: [r for r in shop.request_rows() if str(r["org_refno"]) == str(order["id"])],
             "the order's voucher request in MISA")
    assert server.dispatcher.wait_idle(TIMEOUT)

    text = shop.http.get(server.url + "/metrics").text
    assert re.search(r'hexaflow_http_request_duration_seconds_count\{route="hooks",tenant="default"\} [2-9]', text), text
    assert 'hexaflow_deliveries_total{connector="haravan",status="200",tenant="default"} 1.0' in text
    assert re.search(r'hexaflow_runs_total\{flow="orders",outcome="ok",tenant="default"\} [1-9]', text)
    assert re.search(r'hexaflow_documents\{flow="orders",state="(queued|accepted)",tenant="default"\} [1-9]', text)
    assert "hexaflow_dead_letters_open" in text and "hexaflow_runs_pending" in text


def test_json_logs_carry_the_tenant():
    formatter = JsonLogFormatter("shop-a")
    record = logging.LogRecord("hexaflow.serve", logging.WARNING, __file__, 1, "serve: %s", ("x",), None)
    line = json.loads(formatter.format(record))
    assert line["tenant"] == "shop-a" and line["level"] == "warning" and line["message"] == "serve: x"
    record.tenant = "shop-b"
    assert json.loads(formatter.format(record))["tenant"] == "shop-b"


# --------------------------------------------------------------------------- load
DELIVERIES = 200


def test_200_concurrent_deliveries_are_all_taken_and_each_order_is_sent_once(shop):
    server = shop.serve("orders")
    customer = shop.lan()
    orders = [shop.create_order(customer) for _ in range(DELIVERIES)]
    bodies = [shop.delivery(order) for order in orders]
    start = threading.Barrier(DELIVERIES, timeout=30)

    def deliver(body: tuple[bytes, dict[str, str]]) -> tuple[int | str, float]:
        start.wait()                       # all at once, each on its own connection
        began = time.perf_counter()
        try:
            answer = httpx.post(server.hook_url("haravan"), content=body[0], headers=body[1],
                                timeout=30)
            return answer.status_code, time.perf_counter() - began
        except httpx.TransportError as exc:
            return type(exc).__name__, time.perf_counter() - began

    with ThreadPoolExecutor(DELIVERIES) as pool:
        results = list(pool.map(deliver, bodies))
    statuses = [status for status, _ in results]
    assert statuses == [200] * DELIVERIES, {s: statuses.count(s) for s in set(statuses)}
    latencies = sorted(seconds for _, seconds in results)
    print(f"\n{DELIVERIES} concurrent deliveries: p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms")

    ids = {str(order["id"]) for order in orders}

    def all_sent() -> bool:
        return ids <= {str(r["org_refno"]) for r in shop.request_rows() if r["voucher_type"] == SALES_ORDER}
    wait_for(all_sent, "a sales order in MISA for every order", timeout=120)
    assert server.dispatcher.wait_idle(60)
    sales = [str(r["org_refno"]) for r in shop.request_rows()
             if r["voucher_type"] == SALES_ORDER and str(r["org_refno"]) in ids]
    assert sorted(sales) == sorted(ids)            # each once
    assert len({row["record_id"] for row in shop.inbox()}) == DELIVERIES
