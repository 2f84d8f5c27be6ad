"""The status page and /metrics for many tenants and many serve processes, on SQLite and on
PostgreSQL (docs/status-page.md "Tenants", "Access"; issue 15).

Each test gets its own store on each backend (tests/state_backends.py), filled through the
store's own methods with two shops whose rows differ in every field a page shows, and a third
that never ran. Pages are asked of StatusPage in-process (no sandbox, no flow run: cheap); the
access tests run two HookServers on one store, as two serve processes behind a load balancer,
over real HTTP on loopback. Every wait is bounded.
"""
from __future__ import annotations

import re

import httpx
import pytest

from hexaflow.ledger_rows import DeadLetter, LedgerWrite, Outcome, RowRef
from hexaflow.serve import HookServer
from hexaflow.state import open_store
from hexaflow.statuspage import COOKIE, StatusPage
from hexaflow.statuspage_access import FREE_FAILURES_PER_CLIENT, FREE_FAILURES_PER_TOKEN

TOKEN = "stores-admin-token-3c8e1f6a9d"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = {"HEXAFLOW_ADMIN_TOKEN": TOKEN, "HEXAFLOW_UI_LANGUAGE": "en"}
TIMEOUT = 15.0
# What each shop holds; nothing of one may appear on the other's pages.
SHOPS = {
    "shop-a": {"order": "7001", "number": "#A7001", "rejected": "7002", "letter": "7003",
               "reason": "warehouse ALPHA-WH is not mapped", "run": "ok"},
    "shop-b": {"order": "8001", "number": "#B8001", "rejected": "8002", "letter": "8003",
               "reason": "customer BETA-CUST has no tax code", "run": "failed"},
}
QUIET = "shop-c"      # a tenant with flows and nothing in the store yet
TENANTS = {"shop-a": {"orders": ("haravan", "orders")},
           "shop-b": {"orders": ("haravan", "orders"), "customers": ("haravan", "customers")},
           QUIET: {"orders": ("haravan", "orders")}}


def _fill(setting: str) -> None:
    store = open_store(setting)
    try:
        for tenant, shop in SHOPS.items():
            for source_id, state in ((shop["order"], "accepted"), (shop["rejected"], "rejected")):
                ref = RowRef(tenant, "orders", "sales_order", f"DH_{source_id}")
                payload = {"memo": f"Đơn hàng {shop['number'] if state == 'accepted' else source_id}"}
                store.plan(LedgerWrite(ref, "misa", "sales_order", "save", source_id, None, payload))
                store.mark(ref, Outcome("queued", target_ref=f"ref-{source_id}"))
                store.mark(ref, Outcome(state, message="refused" if state == "rejected" else None,
                                        attempted=False))
            store.dead_letter(DeadLetter(tenant, "orders", shop["letter"], shop["reason"],
                                         record={"id": shop["letter"], "name": shop["number"] + "-x"}))
            run = store.start_run(tenant, "orders")
            store.finish_run(run, shop["run"], {"records": 3, "failed_records": 1})
    finally:
        store.close()


@pytest.fixture
def store_setting(state_target) -> str:
    _fill(str(state_target))
    return str(state_target)


def _get(page: StatusPage, path: str) -> tuple[int, str]:
    answer = page.handle("GET", path, BEARER)
    return answer.status, answer.body.decode("utf-8")


def _others(tenant: str) -> list[str]:
    """Every value of the other shop that a page could show."""
    other = SHOPS[next(t for t in SHOPS if t != tenant)]
    return [other["order"], other["number"], other["rejected"], other["letter"],
            other["reason"].split()[1]]


# --------------------------------------------------------------------------- many tenants
def test_the_tenant_list_shows_each_tenant_its_counts_health_and_last_run(store_setting):
    page = StatusPage(config=CONFIG, state=store_setting, tenants=TENANTS)
    status, html = _get(page, "/status")
    assert status == 200 and 'id="tenants"' in html
    rows = {m.group(1): m.group(0) for m in re.finditer(
        r'<tr class="tenant-row" data-tenant="([^"]+)" data-health="\w+">.*?</tr>', html, re.S)}
    assert list(rows) == ["shop-a", "shop-b", QUIET]
    health = dict(re.findall(r'data-tenant="([^"]+)" data-health="(\w+)"', html))
    # shop-a: its run went through, but a document was rejected and a letter is open;
    # shop-b: its last run failed; shop-c: nothing wrong (nothing at all).
    assert health == {"shop-a": "problems", "shop-b": "failing", QUIET: "ok"}
    numbers = lambda row: re.findall(r'<td class="num">(?:<[^>]+>)?(\d+)', row)    # noqa: E731
    assert numbers(rows["shop-a"]) == ["1", "0", "1", "1"]     # settled, moving, rejected, letters
    assert numbers(rows[QUIET]) == ["0", "0", "0", "0"]
    assert "customers" in rows["shop-b"] and "customers" not in rows["shop-a"]   # configured flows
    assert "Failed" in rows["shop-b"] and "OK" in rows["shop-a"]               # last run
    for tenant in TENANTS:
        assert f'href="/status/t/{tenant}/"' in rows[tenant]
    assert 'href="/status/t/shop-a/problems"' in rows["shop-a"]
    vi = page.handle("GET", "/status?lang=vi", BEARER).body.decode("utf-8")
    assert "Các đơn vị (tenant)" in vi and "có vấn đề" in vi and "lỗi" in vi


@pytest.mark.parametrize("tenant", sorted(SHOPS))
def test_a_tenants_pages_show_its_rows_never_another_tenants_and_link_within_its_prefix(
        store_setting, tenant):
    page = StatusPage(config=CONFIG, state=store_setting, tenants=TENANTS)
    shop, prefix, others = SHOPS[tenant], f"/status/t/{tenant}", _others(tenant)
    other = SHOPS[next(t for t in SHOPS if t != tenant)]
    own = {"": [f"DH_{shop['order']}", f"DH_{shop['rejected']}"],
           "/problems": [shop["letter"], shop["reason"]],
           f"/search?q={shop['order']}": [f"DH_{shop['order']}"],
           f"/search?q=DH_{shop['rejected']}": [f"DH_{shop['rejected']}"],
           "/search?q=%23" + shop["number"][1:].lower(): [f"DH_{shop['order']}"],  # ILIKE / LIKE
           f"/record/{shop['order']}": [f"DH_{shop['order']}", "accepted"],
           f"/record/{shop['letter']}": [shop["reason"]]}
    for sub, expected in own.items():
        status, html = _get(page, prefix + "/" + sub.lstrip("/"))
        assert status == 200, (sub, status)
        for text in expected:
            assert text in html, (sub, text)
        for text in others:
            assert text not in html, (sub, text)
        assert f'<code id="tenant-name">{tenant}</code>' in html
        assert 'id="nav-tenants"' in html                  # the way back to the list
        for link in re.findall(r'(?:href|action)="([^"#]+)"', html):
            assert link.startswith(prefix + "/") or link.split("?")[0] in ("/status",
                                                                           "/status/logout"), (sub, link)
    # The other shop's order, code, number and letter, asked of this tenant: nothing found.
    hidden = [f"DH_{other['order']}", f"DH_{other['rejected']}", other["reason"].split()[1]]
    asks = {f"/record/{other['order']}": 404, f"/record/{other['letter']}": 404,
            f"/search?q=DH_{other['order']}": 200, "/search?q=%23" + other["number"][1:]: 200,
            f"/search?q={other['letter']}": 200}
    for ask, expected_status in asks.items():
        status, html = _get(page, prefix + ask)
        assert status == expected_status, (ask, status)
        assert 'id="search-nothing"' in html or "Nothing has been recorded" in html, ask
        assert 'class="doc-row"' not in html and 'class="letter-row"' not in html, ask
        for text in hidden:
            assert text in ask or text not in html, (ask, text)    # the query is echoed
    filtered = _get(page, prefix + "/?flow=orders&state=rejected")[1]
    assert f"DH_{shop['rejected']}" in filtered and f"DH_{shop['order']}" not in filtered


def test_an_unknown_tenant_is_a_404_page_and_only_after_the_login(store_setting):
    page = StatusPage(config=CONFIG, state=store_setting, tenants=TENANTS)
    for path in ("/status/t/no-such-shop/", "/status/t/no-such-shop/problems", "/status/t/",
                 "/status/problems"):           # several tenants: no page without a tenant
        status, html = _get(page, path)
        assert status == 404 and "Page not found" in html, path
        assert page.handle("GET", path, {}).status == 401, path     # says nothing of tenants


def test_one_tenant_keeps_its_pages_at_status_and_also_under_its_prefix(store_setting):
    page = StatusPage(config=CONFIG, state=store_setting, tenants={"shop-a": TENANTS["shop-a"]})
    at_root, under = _get(page, "/status"), _get(page, "/status/t/shop-a/")
    for status, html in (at_root, under):
        assert status == 200 and "DH_7001" in html and "DH_8001" not in html
        assert 'id="nav-tenants"' not in html                     # no list to go back to
    assert 'href="/status/problems"' in at_root[1] and 'href="/status/record/7001"' in at_root[1]
    assert 'href="/status/t/shop-a/problems"' in under[1]
    assert 'action="/status/t/shop-a/search"' in under[1]
    assert 'href="/status/t/shop-a/record/7001"' in under[1]
    assert _get(page, "/status/t/shop-a/record/7001")[0] == 200
    assert _get(page, "/status/t/shop-b/")[0] == 404


# --------------------------------------------------------------------------- /metrics
def test_metrics_report_every_tenant_from_the_store(store_setting):
    server = HookServer.single([], tenant="shop-a", config={}, state=store_setting)
    try:
        server.tenant_names = lambda: ["shop-a", "shop-b", QUIET]      # as a many-tenant serve
        text = server.metrics.render()[0].decode("utf-8")
    finally:
        server.stop(timeout=5)
    for tenant, shop in SHOPS.items():
        assert f'hexaflow_documents{{flow="orders",state="accepted",tenant="{tenant}"}} 1.0' in text
        assert f'hexaflow_documents{{flow="orders",state="rejected",tenant="{tenant}"}} 1.0' in text
        assert f'hexaflow_dead_letters_open{{flow="orders",tenant="{tenant}"}} 1.0' in text
    assert f'hexaflow_runs_pending{{tenant="{QUIET}"}} 0.0' in text
    assert f'tenant="{QUIET}",' not in text.split("hexaflow_documents", 1)[1]


# --------------------------------------------------------------------------- many serve processes
@pytest.fixture
def two_processes(state_target):
    """Two serve processes' worth of HookServers (each its own StatusPage, HTTP port and
    store connections) on one store."""
    servers = [HookServer.single([], tenant="shop-a", config=CONFIG, state=str(state_target)).start()
               for _ in range(2)]
    try:
        yield [s.url for s in servers]
    finally:
        for server in servers:
            server.stop(timeout=10)


def _client(address: str = "127.0.0.1") -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT, follow_redirects=False,
                        transport=httpx.HTTPTransport(local_address=address))


def test_a_session_made_by_one_process_works_on_the_other_and_logout_ends_it_on_both(two_processes):
    one, two = two_processes
    with _client() as http:
        login = http.post(one + "/status/login", data={"token": TOKEN})
        assert login.status_code == 303, login.text
        sid = login.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        cookie = {"Cookie": f"{COOKIE}={sid}"}
        pages = [httpx.get(url + "/status", headers=cookie, timeout=TIMEOUT) for url in (one, two)]
        assert [p.status_code for p in pages] == [200, 200]
        csrfs = {re.search(r'name="csrf" value="([^"]+)"', p.text).group(1) for p in pages}
        assert len(csrfs) == 1                          # one session, one CSRF token
        out = http.post(two + "/status/logout", data={"csrf": csrfs.pop()}, headers=cookie)
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    for url in (one, two):
        again = httpx.get(url + "/status", headers=cookie, timeout=TIMEOUT)
        assert again.status_code == 401 and 'id="login-form"' in again.text, url


def test_wrong_tokens_on_one_process_throttle_the_client_on_the_other(two_processes, state_target):
    one, two = two_processes
    with _client() as http:
        for n in range(FREE_FAILURES_PER_CLIENT):
            answer = http.post((one, two)[n % 2] + "/status/login", data={"token": f"guess-{n}"})
            assert answer.status_code == 401, (n, answer.status_code)
        for url in (one, two):
            throttled = http.post(url + "/status/login", data={"token": TOKEN})
            assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1, url
    with _client("127.0.0.2") as other:                 # another address is not held back
        assert other.post(two + "/status/login", data={"token": TOKEN}).status_code == 303
    kept = state_target.rows("SELECT scope, name, recent FROM status_login_failures")
    assert not [r for r in kept if "guess" in r["recent"]]        # digests, never the guesses


def test_guesses_spread_over_processes_and_addresses_throttle_the_token(state_target):
    pages = [StatusPage(config=CONFIG, state=str(state_target), tenants={"shop-a": {}})
             for _ in range(2)]
    for n in range(FREE_FAILURES_PER_TOKEN):        # a new address each time: no client waits
        answer = pages[n % 2].handle("POST", "/status/login", {}, f"token=g{n}".encode(),
                                     client=f"10.9.{n}.1")
        assert answer.status == 401, (n, answer.status)
    for page in pages:
        assert page.handle("GET", "/status", BEARER, client="10.9.99.1").status == 429
    rows = state_target.rows("SELECT id_hash FROM status_sessions")
    assert rows == []                               # no session was made by a refused login


def test_the_store_keeps_a_digest_of_the_session_id_never_the_id(state_target):
    page = StatusPage(config=CONFIG, state=str(state_target), tenants={"shop-a": {}})
    login = page.handle("POST", "/status/login", {}, f"token={TOKEN}".encode(), client="c")
    sid = dict(login.headers)["Set-Cookie"].split(";")[0].split("=", 1)[1]
    rows = state_target.rows("SELECT id_hash, csrf, expires_at - created_at AS seconds "
                             "FROM status_sessions")
    assert len(rows) == 1 and sid not in str(rows) and len(rows[0]["id_hash"]) == 64
    assert rows[0]["seconds"] == pytest.approx(12 * 3600)
    # An expired session opens nothing, on any process.
    state_target.execute("UPDATE status_sessions SET expires_at = created_at - 1")
    assert page.handle("GET", "/status", {"Cookie": f"{COOKIE}={sid}"}).status == 401
