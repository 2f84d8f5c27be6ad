"""The read-only status page of ``hexaflow serve`` (docs/status-page.md).

One world for the module: both sandboxes and serve on loopback (conftest.py's Shop), a shop
with four orders (two good ones, one with a note holding markup, one with an item MISA lacks so
its document is rejected, one from a location the warehouse table does not map so it cannot be
mapped), and the customers and orders flows run until MISA has answered. Plain HTTP tests
(httpx) check access, secrets and escaping; browser tests drive Debian's chromium headless
through chromedriver and save screenshots (HEXAFLOW_SCREENSHOTS, default
test-artifacts/screenshots/). Every wait is bounded.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import pytest

from hexaflow.connectors.commands import start_sandboxes
from hexaflow.runner import FlowError
from hexaflow.serve import HookServer
from hexaflow.statuspage import COOKIE, LABELS, TEMPLATES, StatusPage

from serve_kit import CREDENTIALS, TENANT, TIMEOUT, Shop, wait_for

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "status-admin-token-5b7c1e09d4"
SECRETS = {"HEXAFLOW_ADMIN_TOKEN": TOKEN, "HARAVAN_TOKEN": CREDENTIALS["HARAVAN_TOKEN"],
           "HARAVAN_WEBHOOK_SECRET": CREDENTIALS["HARAVAN_WEBHOOK_SECRET"],
           "MISA_ACCESS_CODE": CREDENTIALS["MISA_ACCESS_CODE"]}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
MARKUP = '<script>window.__hexaflow_xss = 1</script><img src=x onerror="window.__hexaflow_xss = 2">'
UNKNOWN_ITEM = "KHONG-CO-TRONG-MISA"
UNMAPPED_LOCATION = 999999
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BROWSER_WAIT_S = 30.0      # a page load on a loaded machine; every browser wait is bounded by it


# --------------------------------------------------------------------------- the world
def _order(shop: Shop, customer: dict, skus: tuple[str, ...] = ("AO-THUN-M",), **extra) -> dict:
    lines = [{"sku": sku, "title": "Hàng thử", "price": 250000, "quantity": 1} for sku in skus]
    body = {"gateway": "Bank transfer", "customer": {"id": customer["id"]}, "line_items": lines,
            **extra}
    answer = shop.http.post(f"{shop.haravan_url}/com/orders.json", json={"order": body},
                            headers=shop.auth)
    assert answer.status_code == 201, answer.text
    return answer.json()["order"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status_page")
    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    config = {**creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url,
              "HEXAFLOW_ADMIN_TOKEN": TOKEN}
    shop = Shop(haravan.url, misa.url, config, tmp / "state.db")
    try:
        shop.seed_items()
        lan = shop.lan()
        orders = {"good": _order(shop, lan),
                  "two": _order(shop, lan, ("AO-THUN-M", "QUAN-JEAN-32")),
                  "markup": _order(shop, lan, note=MARKUP),
                  "rejected": _order(shop, lan, (UNKNOWN_ITEM,)),
                  "unmapped": _order(shop, lan, location_id=UNMAPPED_LOCATION)}
        server = shop.serve("customers", "orders")

        def settled() -> bool:
            server.dispatcher.request_all(TENANT)
            assert server.dispatcher.wait_idle(TIMEOUT)
            states = {e.source_id: e.state for e in shop.ledger() if e.route == "sales_order"}
            return states.get(str(orders["rejected"]["id"])) == "rejected" and all(
                states.get(str(orders[k]["id"])) == "accepted" for k in ("good", "two", "markup"))

        wait_for(settled, "MISA's answers for every order", timeout=30)
        letters = {d["source_id"]: d for d in shop.dead_letters()}
        assert str(orders["rejected"]["id"]) in letters and str(orders["unmapped"]["id"]) in letters
        yield SimpleNamespace(shop=shop, server=server, url=server.url, orders=orders,
                              letters=letters, config=config)
    finally:
        if shop.server is not None:
            shop.server.stop(timeout=30)
        shop.http.close()
        haravan.stop()
        misa.stop()


def _id(world, name: str) -> str:
    return str(world.orders[name]["id"])


def _pages(world) -> dict[str, str]:
    """Every page of the status page, by name → path."""
    good = world.orders["good"]
    return {"overview": "/status", "overview-en": "/status?lang=en",
            "filtered": "/status?flow=orders&state=rejected", "problems": "/status/problems",
            "search-name": "/status/search?q=" + quote(good["name"]),
            "search-id": f"/status/search?q={good['id']}",
            "search-code": f"/status/search?q=DH_{good['id']}",
            "search-nothing": "/status/search?q=nothing-like-this",
            **{f"record-{name}": f"/status/record/{order['id']}"
               for name, order in world.orders.items()},
            "customer": f"/status/record/{world.orders['good']['customer']['id']}"}


# --------------------------------------------------------------------------- labels
def test_both_languages_have_the_same_labels_and_every_template_key_exists():
    assert set(LABELS) == {"vi", "en"}
    assert set(LABELS["vi"]) == set(LABELS["en"])
    assert all(text.strip() for labels in LABELS.values() for text in labels.values())
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\('([a-z_.]+)'\)""", template.read_text(encoding="utf-8")))
    assert used and used <= set(LABELS["en"]), used - set(LABELS["en"])
    # Keys built from data (states, outcomes, run statuses, search kinds, languages).
    for key in ("state.rejected", "outcome.queued", "run.ok", "search.by_text", "lang.vi"):
        assert key in LABELS["vi"]
    assert LABELS["vi"]["runs.title"] == "Lần chạy gần đây"
    assert LABELS["vi"]["col.code"] == "Mã chứng từ"


def test_the_templates_ship_with_the_package():
    import tomllib
    from fnmatch import fnmatch
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = config["package-data"]["hexaflow"]
    templates = sorted(TEMPLATES.glob("*.html"))
    assert templates
    for template in templates:
        rel = template.relative_to(ROOT / "engine").as_posix()
        assert any(fnmatch(rel, pattern) for pattern in patterns), rel


def test_the_language_setting_is_checked_at_start(tmp_path: Path):
    with pytest.raises(FlowError, match="HEXAFLOW_UI_LANGUAGE"):
        StatusPage(config={"HEXAFLOW_UI_LANGUAGE": "fr"}, state=str(tmp_path / "s.db"), tenants={"t": {}})
    page = StatusPage(config={"HEXAFLOW_UI_LANGUAGE": "en", "HEXAFLOW_ADMIN_TOKEN": TOKEN},
                      state=str(tmp_path / "s.db"), tenants={"t": {}})
    answer = page.handle("GET", "/status", BEARER)
    assert answer.status == 200 and b"Recent runs" in answer.body
    assert b"L\xe1\xba\xa7n ch\xe1\xba\xa1y" in page.handle("GET", "/status?lang=vi", BEARER).body


# --------------------------------------------------------------------------- access over HTTP
def test_without_a_configured_token_the_page_is_off_and_says_which_variable_to_set(world):
    config = {k: v for k, v in world.config.items() if k != "HEXAFLOW_ADMIN_TOKEN"}
    server = HookServer.single([], tenant=TENANT, config=config, state=str(world.shop.state)).start()
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            for answer in (http.get(server.url + "/status"),
                           http.get(server.url + "/status/problems", headers=BEARER),
                           http.post(server.url + "/status/login", data={"token": TOKEN})):
                assert answer.status_code == 404, answer.text
                assert "HEXAFLOW_ADMIN_TOKEN" in answer.text
                assert _id(world, "good") not in answer.text and "DH_" not in answer.text
                assert "set-cookie" not in answer.headers
    finally:
        server.stop()


def test_without_the_token_every_page_is_401_with_a_login_form_and_no_data(world):
    forged_mac = f"{int(time.time()) + 3600}.{'0' * 64}"
    expired = f"{int(time.time()) - 10}.{'0' * 64}"
    tries = [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"},
             {"Authorization": f"Bearer {TOKEN}x"}, {"Cookie": f"{COOKIE}={TOKEN}"},
             {"Cookie": f"{COOKIE}={forged_mac}"}, {"Cookie": f"{COOKIE}={expired}"},
             {"Cookie": f"{COOKIE}={'9' * 5000}.{'0' * 64}"},
             # "²" (byte 0xb2, read as Latin-1) is a digit to str.isdigit(), not to int().
             {"Cookie": f"{COOKIE}=".encode() + b"\xb2.abc"}]
    with httpx.Client(timeout=TIMEOUT) as http:
        for path in _pages(world).values():
            for headers in tries:
                answer = http.get(world.url + path, headers=headers)
                assert answer.status_code == 401, (path, headers, answer.status_code)
                assert 'id="login-form"' in answer.text and 'name="token"' in answer.text
                # The login form echoes the address asked for (its own ids and query): no
                # other record's id, no document code, no reason may appear.
                for name in ("good", "rejected", "unmapped"):
                    if _id(world, name) not in path:
                        assert _id(world, name) not in answer.text, (path, headers)
                assert ("DH_" not in answer.text or "DH_" in path) and UNKNOWN_ITEM not in answer.text
                assert "Áo thun" not in answer.text and "Nguyễn Lan" not in answer.text
                assert "hexaflow_xss" not in answer.text
        wrong = http.post(world.url + "/status/login", data={"token": "wrong-token", "next": "/status"})
        assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
        assert "set-cookie" not in wrong.headers and _id(world, "good") not in wrong.text


def test_a_login_sets_an_httponly_strict_cookie_holding_a_random_session_id_not_the_token(world):
    # (The session is server-side: tests/serve/test_serve_hardening.py shows that logout ends it
    # and that the logout form needs its CSRF token.)
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as http:
        login = http.post(world.url + "/status/login",
                          data={"token": TOKEN, "next": "/status/problems"})
        assert login.status_code == 303, login.text
        assert login.headers["location"] == "/status/problems"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/status" in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        assert TOKEN not in cookie and re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
        page = http.get(world.url + "/status/problems", headers={"Cookie": f"{COOKIE}={value}"})
        assert page.status_code == 200 and _id(world, "rejected") in page.text
        # A session id changed by one character is no session.
        tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
        assert httpx.get(world.url + "/status", headers={"Cookie": f"{COOKIE}={tampered}"},
                         timeout=TIMEOUT).status_code == 401
        # No open redirect: `next` must be a path of the page.
        for bad in ("https://evil.example/", "//evil.example/status", "/health", "/status/logout"):
            away = http.post(world.url + "/status/login", data={"token": TOKEN, "next": bad})
            assert away.status_code == 303 and away.headers["location"] == "/status", bad
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as fresh:
        out = fresh.post(world.url + "/status/logout")     # no session: nothing to end
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


def test_no_secret_appears_in_any_page_or_header_and_no_page_writes(world):
    before = (world.shop.ledger(), world.shop.ledger("customers"), world.shop.dead_letters())
    with httpx.Client(timeout=TIMEOUT) as http:
        answers = [http.get(world.url + path, headers=BEARER) for path in _pages(world).values()]
        answers += [http.get(world.url + path + ("&" if "?" in path else "?") + "lang=vi",
                             headers=BEARER) for path in _pages(world).values()]
        answers += [http.get(world.url + "/status"),
                    http.post(world.url + "/status/login", data={"token": "wrong"}),
                    http.post(world.url + "/status/login", data={"token": TOKEN})]
        assert all(a.status_code in (200, 303, 401) for a in answers), [a.status_code for a in answers]
        for answer in answers:
            text = answer.text + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
            for name, secret in SECRETS.items():
                assert secret not in text, (name, str(answer.url))
    assert (world.shop.ledger(), world.shop.ledger("customers"), world.shop.dead_letters()) == before


def test_record_fields_and_the_query_are_html_escaped(world):
    with httpx.Client(timeout=TIMEOUT) as http:
        record = http.get(world.url + f"/status/record/{_id(world, 'markup')}", headers=BEARER)
        search = http.get(world.url + "/status/search", params={"q": MARKUP}, headers=BEARER)
        problems = http.get(world.url + "/status/problems", headers=BEARER)
    assert record.status_code == 200 and search.status_code == 200
    assert "&lt;script&gt;window.__hexaflow_xss = 1&lt;/script&gt;" in record.text
    assert "&lt;script&gt;" in search.text
    for answer in (record, search, problems):
        assert "<script" not in answer.text.lower() and "<img" not in answer.text.lower()
        assert "script-src" not in answer.headers["content-security-policy"]   # default-src 'none'
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    # MISA's message quotes the item code in angle brackets; it is shown, escaped.
    assert f"&lt;{UNKNOWN_ITEM}&gt;" in problems.text


def test_the_pages_show_documents_states_history_and_dead_letters(world):
    good, rejected, unmapped = (_id(world, n) for n in ("good", "rejected", "unmapped"))
    with httpx.Client(timeout=TIMEOUT) as http:
        get = lambda path: http.get(world.url + path, headers=BEARER)      # noqa: E731
        overview = get("/status")
        assert overview.status_code == 200
        for name in ("good", "two", "markup", "rejected"):
            assert f"DH_{_id(world, name)}" in overview.text
        assert "Lần chạy gần đây" in overview.text and "Chứng từ gần đây" in overview.text
        assert "haravan/orders" in overview.text            # the flows' sources, from the plans
        filtered = get("/status?flow=orders&state=rejected")
        assert f"DH_{rejected}" in filtered.text and f"DH_{good}" not in filtered.text

        record = get(f"/status/record/{good}")
        assert record.status_code == 200 and f"DH_{good}" in record.text
        assert "Đơn hàng" in record.text                     # the source resource, translated
        history = re.findall(r'class="chip s-(\w+)"', record.text.split("Lịch sử", 1)[1])
        assert history[:3] == ["planned", "queued", "accepted"], history
        assert get("/status/record/no-such-record").status_code == 404

        problems = get("/status/problems")
        assert rejected in problems.text and unmapped in problems.text
        assert "warehouses_by_location" in problems.text     # the mapping failure's reason
        assert world.letters[rejected]["reason"].split(":")[0] in problems.text

        by_name = get("/status/search?q=" + quote(world.orders["good"]["name"]))
        by_id = get(f"/status/search?q={good}")
        by_code = get(f"/status/search?q=DH_{good}")
        for answer in (by_name, by_id, by_code):
            assert f'href="/status/record/{good}"' in answer.text, answer.text[:3000]
            assert f"DH_{_id(world, 'two')}" not in answer.text
        # The name of a dead-lettered order is found in the record kept with its letter.
        assert f'href="/status/record/{unmapped}"' in get(
            "/status/search?q=" + quote(world.orders["unmapped"]["name"])).text
        assert 'id="search-nothing"' in get("/status/search?q=nothing-like-this").text


# --------------------------------------------------------------------------- in a browser
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Debian's chromium and chromium-driver are not installed "
           "(apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = Path(os.environ.get("HEXAFLOW_SCREENSHOTS") or ROOT / "test-artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver                     # the `test` extra installs selenium
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser on the status page, with bounded waits.

    A click that loads another page returns once the page it leaves is gone (``click``), and
    every check first waits for the page it is about (``shown``: its heading and its
    ``<html lang>``), so nothing is read from a page that a navigation is replacing.
    """

    def __init__(self, driver, world, screenshots: Path):
        from selenium.common.exceptions import (NoSuchElementException,
                                                StaleElementReferenceException)
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.world, self.folder = driver, world, screenshots
        # While a page loads, the elements a check looks for may not be there yet, or belong to
        # the page going away: "not yet", not a failure.
        self.wait = WebDriverWait(driver, BROWSER_WAIT_S, ignored_exceptions=(
            StaleElementReferenceException, NoSuchElementException))

    def open(self, path: str) -> None:
        self.driver.get(self.world.url + path)

    def by_id(self, element_id: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        return self.wait.until(ec.presence_of_element_located((By.ID, element_id)),
                               f"no element #{element_id}")

    def text(self) -> str:
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.TAG_NAME, "body").text

    def click(self, element) -> None:
        """Click what loads another page; return once the current page is gone (from then
        on its elements are stale: find them again on the new page)."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.common.by import By
        leaving = self.driver.find_element(By.TAG_NAME, "html")
        element.click()

        def gone(_driver) -> bool:
            # Chromium answers for a node of a page it is unloading either "stale element" or,
            # in the middle of the swap, "Node with given id does not belong to the document":
            # both mean the old page is gone.
            try:
                leaving.is_enabled()
            except WebDriverException:
                return True
            return False
        self.wait.until(gone, "the click did not load another page")

    def shown(self, heading: str, lang: str = "vi") -> None:
        """Wait until the page shown is the one whose <h1> holds ``heading``, in ``lang``."""
        from selenium.webdriver.common.by import By

        def there(driver) -> bool:
            return (driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
                    and heading in driver.find_element(By.TAG_NAME, "h1").text)
        self.wait.until(there, f"the page {heading!r} ({lang}) was not shown")

    def login(self, token: str = TOKEN, then: str | None = None) -> None:
        """Log in afresh; ``then``: the heading of the page it leads to (the overview)."""
        self.driver.delete_all_cookies()
        self.open("/status")
        self.shown(_label("login.title"))
        field = self.by_id("token")
        field.clear()
        field.send_keys(token)
        self.click(self.by_id("login-submit"))
        self.shown(then or _label("nav.overview"))

    def shot(self, name: str) -> Path:
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1400, max(800, min(int(height) + 40, 4000)))
        path = self.folder / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        self.driver.set_window_size(1400, 1000)
        return path


def _label(key: str, lang: str = "vi") -> str:
    return LABELS[lang][key]


@pytest.fixture
def page(browser, world, screenshots) -> Page:
    return Page(browser, world, screenshots)


@needs_chromium
def test_browser_without_the_token_sees_only_the_login_form(page: Page):
    page.driver.delete_all_cookies()
    page.open("/status")
    page.shown(_label("login.title"))
    page.by_id("login-form")
    body = page.text()
    assert "Đăng nhập" in body and "Mã truy cập quản trị" in body
    for name in ("good", "rejected"):
        assert _id(page.world, name) not in page.driver.page_source
    assert "DH_" not in page.driver.page_source
    page.shot("login")
    page.login("not-the-token", then=_label("login.title"))
    assert "Mã truy cập không đúng" in page.by_id("login-error").text
    assert page.driver.get_cookies() == []


@needs_chromium
def test_browser_logs_in_and_sees_the_documents_of_the_orders_created(page: Page):
    page.login()
    body = page.text()
    assert "Lần chạy gần đây" in body and "Chứng từ gần đây" in body
    for name in ("good", "two", "markup", "rejected"):
        assert f"DH_{_id(page.world, name)}" in body
    assert "bị từ chối" in body and "đã chấp nhận" in body          # states, in Vietnamese
    cookies = page.driver.get_cookies()
    assert [c["name"] for c in cookies] == [COOKIE]
    assert cookies[0]["httpOnly"] is True and cookies[0]["sameSite"] == "Strict"
    assert TOKEN not in cookies[0]["value"]
    # The note with markup is shown as text and never runs.
    page.open(f"/status/record/{_id(page.world, 'markup')}")
    page.shown(_id(page.world, "markup"))
    assert page.driver.execute_script("return window.__hexaflow_xss === undefined") is True
    page.open("/status")
    page.shown(_label("nav.overview"))
    page.shot("overview")


@needs_chromium
def test_browser_search_finds_an_order_by_its_number_and_opens_its_page(page: Page):
    from selenium.webdriver.common.by import By
    page.login()
    good = page.world.orders["good"]
    page.by_id("q").send_keys(good["name"])                # e.g. #200001
    page.click(page.by_id("search-button"))
    page.shown(_label("search.title"))
    assert page.by_id("search-query").text == good["name"]
    results = page.by_id("search-records")
    assert str(good["id"]) in results.text
    assert f"DH_{good['id']}" in page.text()
    page.shot("search")
    page.click(results.find_element(By.LINK_TEXT, str(good["id"])))
    page.shown(str(good["id"]))
    title = page.by_id("record-title")
    assert "Đơn hàng" in title.text and str(good["id"]) in title.text
    body = page.text()
    assert f"DH_{good['id']}" in body and "Lịch sử" in body and "đã chấp nhận" in body
    page.shot("order")


@needs_chromium
def test_browser_shows_the_reason_of_each_dead_letter(page: Page):
    page.login()
    page.click(page.by_id("nav-problems"))
    page.shown(_label("nav.problems"))
    page.by_id("letters-total")
    body = page.text()
    assert "Thư lỗi đang mở" in body and "Lý do" in body and "Xung đột" in body
    rejected, unmapped = _id(page.world, "rejected"), _id(page.world, "unmapped")
    assert rejected in body and unmapped in body
    assert f"<{UNKNOWN_ITEM}>" in body                    # MISA's reason, shown as text
    assert "warehouses_by_location" in body
    page.shot("dead-letters")


@needs_chromium
def test_browser_language_switch_shows_english_then_vietnamese_labels(page: Page):
    page.login()
    page.click(page.by_id("lang-en"))
    page.shown(_label("nav.overview", "en"), "en")
    body = page.text()
    assert "Recent runs" in body and "Recent documents" in body
    assert "Dead letters and conflicts" in body and "Lần chạy gần đây" not in body
    page.shot("overview-en")
    page.click(page.by_id("nav-problems"))                # links keep the language
    page.shown(_label("nav.problems", "en"), "en")
    assert "Open dead letters" in page.text()
    page.click(page.by_id("lang-vi"))
    page.shown(_label("nav.problems"), "vi")
    body = page.text()
    assert "Thư lỗi đang mở" in body and "Open dead letters" not in body
def test_times_are_shown_in_the_shops_zone_not_the_servers(monkeypatch):
    from hexaflow.statuspage import _when
    monkeypatch.delenv("HEXAFLOW_UI_TIMEZONE", raising=False)
    noon_utc = 1764244800                              # 2025-11-27 12:00:00 UTC
    assert _when(noon_utc) == "2025-11-27 19:00:00"    # Asia/Ho_Chi_Minh by default
    monkeypatch.setenv("HEXAFLOW_UI_TIMEZONE", "UTC")
    assert _when(noon_utc) == "2025-11-27 12:00:00"
