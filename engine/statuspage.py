"""The read-only status page of ``hexaflow serve`` (docs/status-page.md).

Server-rendered HTML under ``/status``, per tenant: recent runs, documents and their lifecycle
state, open dead letters and conflicts, search by record id, document code or text in a
payload, and one page per source record with each document's history; every tenant's pages are
under ``/status/t/<tenant>/`` and, with several tenants, ``/status`` lists them. The pages only
read the state store (their store is made read-only: ``make_read_only``) and every query is
bounded (``LIMIT``).

Access: ``HEXAFLOW_ADMIN_TOKEN`` (a weak one stops serve at start). ``Authorization: Bearer
<token>``, or a login form that starts a server-side session: the HttpOnly, SameSite=Strict
cookie holds only a random session id, logout ends the session, and the logout form carries the
session's CSRF token. Wrong tokens are throttled per client and for the token. Sessions and
the throttle are kept in the state store, so serve processes sharing it share them
(statuspage_access.py, on a writable connection of its own per request). Without a configured
token the page is off (404 naming the variable).
Labels come from one dictionary, in Vietnamese (default) or English (``HEXAFLOW_UI_LANGUAGE``,
``?lang=``).
"""
from __future__ import annotations

import hmac
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jinja2

from hexaflow import queue_view
from hexaflow import statuspage_queries as queries
from hexaflow.environment import ui_timezone
from hexaflow.runner import FlowError
from hexaflow.state import LedgerEntry, StateError, StateStore, open_store, state_faults
from hexaflow.statuspage_access import (SESSION_SECONDS, TOKEN_RULE, LoginThrottle, Session, Sessions,
                                        csrf_matches, token_weakness)
from hexaflow.timeutil import DEFAULT_TIMEZONE, get_zone

log = logging.getLogger("hexaflow.statuspage")

TOKEN_VARIABLE = "HEXAFLOW_ADMIN_TOKEN"
LANGUAGE_VARIABLE = "HEXAFLOW_UI_LANGUAGE"
COOKIE = "hexaflow_status"
MAX_FORM = 16 * 1024
# Bounds: the page stays fast with 100k documents (bench/status_page.py).
RUNS_SHOWN = 20
DOCUMENTS_SHOWN = 100
LETTERS_SHOWN = 200
SEARCH_SHOWN = 50
EVENTS_SHOWN = 200
RECORD_DOCUMENTS_SHOWN = 200
TEMPLATES = Path(__file__).resolve().parent / "templates" / "status"

# Every label of the page, in every language: one dictionary (a test checks that both
# languages have the same keys and that every key a template uses exists).
LABELS: dict[str, dict[str, str]] = {
    "vi": {
        "app.title": "Trạng thái đồng bộ",
        "app.tenant": "Đơn vị (tenant)",
        "app.as_of": "Số liệu lúc",
        "nav.overview": "Tổng quan",
        "nav.tenants": "Tất cả đơn vị",
        "tenants.title": "Các đơn vị (tenant)",
        "tenants.health_rule": "Lỗi: lần chạy mới nhất của một luồng bị lỗi. Có vấn đề: có thư lỗi "
                               "đang mở hoặc chứng từ bị từ chối hay xung đột. Ổn: không có gì "
                               "trong hai trường hợp trên.",
        "col.tenant": "Đơn vị",
        "col.health": "Tình trạng",
        "col.settled": "Đã xong",
        "col.in_motion": "Đang xử lý",
        "col.rejected": "Bị từ chối",
        "col.last_run": "Lần chạy cuối",
        "health.ok": "ổn",
        "health.problems": "có vấn đề",
        "health.failing": "lỗi",
        "nav.problems": "Thư lỗi và xung đột",
        "nav.logout": "Đăng xuất",
        "nav.language": "Ngôn ngữ",
        "lang.vi": "Tiếng Việt",
        "lang.en": "English",
        "search.label": "Tìm kiếm",
        "search.placeholder": "Số đơn hàng (#1001), ID bản ghi hoặc mã chứng từ",
        "search.button": "Tìm",
        "search.title": "Kết quả tìm kiếm",
        "search.query": "Từ khóa",
        "search.records": "Bản ghi tìm thấy",
        "search.documents": "Chứng từ tìm thấy",
        "search.letters": "Thư lỗi tìm thấy",
        "search.nothing": "Không tìm thấy đơn hàng, bản ghi hay chứng từ nào khớp.",
        "search.empty": "Nhập số đơn hàng, ID bản ghi hoặc mã chứng từ.",
        "search.matched_by": "Khớp theo",
        "search.by_id": "ID bản ghi",
        "search.by_code": "Mã chứng từ",
        "search.by_text": "Nội dung chứng từ",
        "login.title": "Đăng nhập",
        "login.required": "Cần mã truy cập quản trị để xem trang trạng thái.",
        "login.token": "Mã truy cập quản trị",
        "login.submit": "Đăng nhập",
        "login.wrong": "Mã truy cập không đúng.",
        "login.throttled": "Nhập sai quá nhiều lần. Hãy thử lại sau {seconds} giây.",
        "csrf.title": "Biểu mẫu không hợp lệ",
        "csrf.body": "Biểu mẫu này đã hết hạn hoặc không gửi từ trang trạng thái. Hãy tải lại "
                     "trang rồi thử lại.",
        "disabled.title": "Trang trạng thái đang tắt",
        "disabled.body": "Đặt biến môi trường {var} (một chuỗi ngẫu nhiên dài) rồi khởi động lại "
                         "hexaflow serve để bật trang này.",
        "notfound.title": "Không tìm thấy trang",
        "notfound.body": "Địa chỉ này không có trong trang trạng thái.",
        "statefault.title": "Không đọc được tệp trạng thái",
        "flows.title": "Luồng đồng bộ",
        "runs.title": "Lần chạy gần đây",
        "documents.title": "Chứng từ gần đây",
        "documents.filtered": "Đang lọc",
        "documents.clear": "Bỏ lọc",
        "letters.title": "Thư lỗi đang mở",
        "letters.open_total": "Tổng số thư lỗi đang mở",
        "conflicts.title": "Xung đột",
        "record.title": "Bản ghi",
        "record.documents": "Chứng từ của bản ghi",
        "record.history": "Lịch sử",
        "record.payload": "Dữ liệu gửi đi",
        "record.letters": "Thư lỗi của bản ghi",
        "record.data": "Dữ liệu bản ghi",
        "record.nothing": "Chưa có gì được ghi nhận cho bản ghi này.",
        "col.flow": "Luồng",
        "col.source": "Nguồn",
        "col.cursor": "Con trỏ",
        "col.documents": "Chứng từ",
        "col.dead_letters": "Thư lỗi",
        "col.run": "Lần chạy",
        "col.started": "Bắt đầu",
        "col.duration": "Thời lượng",
        "col.status": "Trạng thái",
        "col.records": "Bản ghi đã đọc",
        "col.failed_records": "Bản ghi lỗi",
        "col.counts": "Kết quả",
        "col.record": "Bản ghi nguồn",
        "col.route": "Tuyến",
        "col.code": "Mã chứng từ",
        "col.document": "Loại chứng từ",
        "col.action": "Thao tác",
        "col.target_ref": "Tham chiếu bên đích",
        "col.state": "Trạng thái",
        "col.updated": "Cập nhật",
        "col.created": "Thời điểm",
        "col.reason": "Lý do",
        "col.message": "Thông báo",
        "col.attempts": "Số lần gửi",
        "col.detail": "Chi tiết",
        "col.letter": "Thư",
        "col.match": "Đoạn khớp",
        "common.none": "Không có",
        "common.latest": "Hiển thị tối đa {n} dòng mới nhất.",
        "common.all": "Tất cả",
        "run.ok": "Thành công",
        "run.failed": "Có lỗi",
        "run.running": "Đang chạy",
        "run.more_left": "còn tiếp",
        "outcome.written": "đã ghi",
        "outcome.would_write": "sẽ ghi",
        "outcome.queued": "đã gửi, chờ xử lý",
        "outcome.skipped": "bỏ qua",
        "outcome.conflict": "xung đột",
        "outcome.rejected": "bị từ chối",
        "outcome.failed": "lỗi",
        "outcome.matched": "khớp điều kiện",
        "state.planned": "chờ gửi",
        "state.failed": "lỗi tạm thời",
        "state.done": "đã ghi",
        "state.queued": "đang chờ xử lý",
        "state.accepted": "đã chấp nhận",
        "state.rejected": "bị từ chối",
        "state.conflict": "xung đột",
        "state.generated": "đã sinh chứng từ",
        "state.posted": "đã ghi sổ",
        "state.deleted": "đã thu hồi",
        "resource.orders": "Đơn hàng",
        "resource.customers": "Khách hàng",
        "resource.products": "Sản phẩm",
        "resource.inventory": "Tồn kho",
        "resource.items": "Hàng hóa",
        "queue.title": "Hàng đợi công việc",
        "queue.rule": "Các lần chạy luồng do tiến trình hexaflow worker thực hiện. Đang chờ: "
                      "công việc chưa chạy (một số được hẹn chạy sau). Bị treo: công việc của "
                      "một worker đã mất tín hiệu; worker khác sẽ chạy lại. Lỗi: công việc kết "
                      "thúc lỗi trong 24 giờ qua.",
        "queue.later": "{n} hẹn chạy sau",
        "col.queue": "Hàng đợi",
        "col.waiting": "Đang chờ",
        "col.running": "Đang chạy",
        "col.stalled": "Bị treo",
        "col.failed_24h": "Lỗi (24 giờ)",
        "workers.title": "Tiến trình worker",
        "workers.rule": "Worker không gửi tín hiệu (heartbeat) quá {seconds} giây được coi là mất "
                        "tín hiệu; công việc nó đang chạy sẽ được chạy lại.",
        "col.worker": "Worker",
        "col.heartbeat": "Tín hiệu gần nhất",
        "col.jobs": "Công việc đang chạy",
        "worker.alive": "đang hoạt động",
        "worker.stalled": "mất tín hiệu",
        "age.seconds": "{n} giây trước",
        "age.minutes": "{n} phút trước",
        "age.hours": "{n} giờ trước",
    },
    "en": {
        "app.title": "Sync status",
        "app.tenant": "Tenant",
        "app.as_of": "As of",
        "nav.overview": "Overview",
        "nav.tenants": "All tenants",
        "tenants.title": "Tenants",
        "tenants.health_rule": "Failing: the latest run of a flow failed. Problems: open dead "
                               "letters, or documents rejected or in conflict. OK: neither.",
        "col.tenant": "Tenant",
        "col.health": "Health",
        "col.settled": "Settled",
        "col.in_motion": "In motion",
        "col.rejected": "Rejected",
        "col.last_run": "Last run",
        "health.ok": "ok",
        "health.problems": "problems",
        "health.failing": "failing",
        "nav.problems": "Dead letters and conflicts",
        "nav.logout": "Log out",
        "nav.language": "Language",
        "lang.vi": "Tiếng Việt",
        "lang.en": "English",
        "search.label": "Search",
        "search.placeholder": "Order number (#1001), record id or document code",
        "search.button": "Search",
        "search.title": "Search results",
        "search.query": "Query",
        "search.records": "Records found",
        "search.documents": "Documents found",
        "search.letters": "Dead letters found",
        "search.nothing": "No order, record or document matches.",
        "search.empty": "Enter an order number, a record id or a document code.",
        "search.matched_by": "Matched by",
        "search.by_id": "record id",
        "search.by_code": "document code",
        "search.by_text": "document content",
        "login.title": "Log in",
        "login.required": "The status page needs the admin access token.",
        "login.token": "Admin access token",
        "login.submit": "Log in",
        "login.wrong": "Wrong access token.",
        "login.throttled": "Too many wrong tries. Try again in {seconds} seconds.",
        "csrf.title": "Form refused",
        "csrf.body": "This form has expired or was not sent from the status page. Reload the "
                     "page and try again.",
        "disabled.title": "The status page is off",
        "disabled.body": "Set the environment variable {var} (a long random string) and restart "
                         "hexaflow serve to turn it on.",
        "notfound.title": "Page not found",
        "notfound.body": "The status page has no such address.",
        "statefault.title": "The state file cannot be read",
        "flows.title": "Flows",
        "runs.title": "Recent runs",
        "documents.title": "Recent documents",
        "documents.filtered": "Filtered by",
        "documents.clear": "Clear filter",
        "letters.title": "Open dead letters",
        "letters.open_total": "Open dead letters in all",
        "conflicts.title": "Conflicts",
        "record.title": "Record",
        "record.documents": "Documents of this record",
        "record.history": "History",
        "record.payload": "Payload sent",
        "record.letters": "Dead letters of this record",
        "record.data": "Record data",
        "record.nothing": "Nothing has been recorded for this record yet.",
        "col.flow": "Flow",
        "col.source": "Source",
        "col.cursor": "Cursor",
        "col.documents": "Documents",
        "col.dead_letters": "Dead letters",
        "col.run": "Run",
        "col.started": "Started",
        "col.duration": "Duration",
        "col.status": "Status",
        "col.records": "Records read",
        "col.failed_records": "Failed records",
        "col.counts": "Results",
        "col.record": "Source record",
        "col.route": "Route",
        "col.code": "Document code",
        "col.document": "Document type",
        "col.action": "Action",
        "col.target_ref": "Target reference",
        "col.state": "State",
        "col.updated": "Updated",
        "col.created": "When",
        "col.reason": "Reason",
        "col.message": "Message",
        "col.attempts": "Attempts",
        "col.detail": "Detail",
        "col.letter": "Letter",
        "col.match": "Match",
        "common.none": "None",
        "common.latest": "Showing at most the latest {n} rows.",
        "common.all": "All",
        "run.ok": "OK",
        "run.failed": "Failed",
        "run.running": "Running",
        "run.more_left": "more left",
        "outcome.written": "written",
        "outcome.would_write": "would write",
        "outcome.queued": "sent, queued",
        "outcome.skipped": "skipped",
        "outcome.conflict": "conflict",
        "outcome.rejected": "rejected",
        "outcome.failed": "failed",
        "outcome.matched": "matched",
        "state.planned": "planned",
        "state.failed": "failed (will retry)",
        "state.done": "written",
        "state.queued": "queued",
        "state.accepted": "accepted",
        "state.rejected": "rejected",
        "state.conflict": "conflict",
        "state.generated": "generated",
        "state.posted": "posted",
        "state.deleted": "withdrawn",
        "resource.orders": "Order",
        "resource.customers": "Customer",
        "resource.products": "Product",
        "resource.inventory": "Inventory",
        "resource.items": "Item",
        "queue.title": "Job queue",
        "queue.rule": "Flow runs made by hexaflow worker processes. Waiting: jobs not started "
                      "yet (some scheduled for later). Stalled: jobs of a worker that stopped "
                      "sending heartbeats; another worker runs them again. Failed: jobs that "
                      "ended with an error in the last 24 hours.",
        "queue.later": "{n} scheduled later",
        "col.queue": "Queue",
        "col.waiting": "Waiting",
        "col.running": "Running",
        "col.stalled": "Stalled",
        "col.failed_24h": "Failed (24 h)",
        "workers.title": "Workers",
        "workers.rule": "A worker without a heartbeat for more than {seconds} seconds is "
                        "stalled; the jobs it was running are run again.",
        "col.worker": "Worker",
        "col.heartbeat": "Last heartbeat",
        "col.jobs": "Jobs running",
        "worker.alive": "alive",
        "worker.stalled": "stalled",
        "age.seconds": "{n} s ago",
        "age.minutes": "{n} min ago",
        "age.hours": "{n} h ago",
    },
}
LANGUAGES = tuple(LABELS)
DEFAULT_LANGUAGE = "vi"
# Outcomes of a run's per-route counts, in the order they are shown ("matched" is not a result).
OUTCOMES = ("written", "would_write", "queued", "skipped", "conflict", "rejected", "failed")
STATE_ORDER = ("planned", "failed", "done", "queued", "accepted", "generated", "posted",
               "rejected", "conflict", "deleted")
PROBLEM_STATES = {"failed", "rejected", "conflict"}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


SECURITY_HEADERS = [
    # No script at all; inline style only (the page's one <style> block).
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on the
    # page's own forms, and the Origin is what tells a cross-site post (CSRF) apart.
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
]


def _when(ts: float | None) -> str:
    """The moment in the shop's zone (HEXAFLOW_UI_TIMEZONE, default the flows' default zone),
    not the server's: the accountant compares it with times in the accounting system."""
    if not ts:
        return "—"
    from datetime import datetime
    zone = get_zone(ui_timezone(DEFAULT_TIMEZONE))
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")


def _pretty_json(text: str | None) -> str:
    if not text:
        return ""
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        return text
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _snippet(text: str, needle: str, width: int = 50) -> str:
    at = text.lower().find(needle.lower())
    if at < 0:
        return ""
    start, end = max(0, at - width), min(len(text), at + len(needle) + width)
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def _is_word_match(text: str, needle: str) -> bool:
    """``needle`` occurs in ``text`` not glued to more letters or digits (so #1001 does not
    find #10010)."""
    pattern = (r"(?<![0-9A-Za-z])" if needle[:1].isalnum() else "") + re.escape(needle) + \
        (r"(?![0-9A-Za-z])" if needle[-1:].isalnum() else "")
    return re.search(pattern, text, re.IGNORECASE) is not None


class StatusPage:
    """Routes ``/status…`` requests to the pages of the tenants it is given; no state of its
    own (sessions and the login throttle are the store's: statuspage_access.py).

    One tenant: its pages are at ``/status``, ``/status/problems``, ``/status/search`` and
    ``/status/record/<id>``. Every tenant's pages are also under ``/status/t/<tenant>/``; with
    several tenants ``/status`` lists them."""

    def __init__(self, *, config: Mapping[str, str], state: str,
                 tenants: Mapping[str, Mapping[str, tuple[str, str]]]):
        self.state = state
        # tenant → flow → (source connector, source resource)
        self.tenants = {name: dict(flows) for name, flows in tenants.items()}
        token = (config.get(TOKEN_VARIABLE) or "").strip()
        self._token = token.encode("utf-8") if token else None
        language = (config.get(LANGUAGE_VARIABLE) or DEFAULT_LANGUAGE).strip().lower()
        if language not in LANGUAGES:
            raise FlowError(f"{LANGUAGE_VARIABLE}={language!r}: use one of {', '.join(LANGUAGES)}")
        self.language = language
        weakness = token_weakness(token) if token else None
        if weakness:
            raise FlowError(f"{TOKEN_VARIABLE} is too weak ({weakness}): use {TOKEN_RULE}")
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                      autoescape=True, undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True)

    @property
    def enabled(self) -> bool:
        return self._token is not None

    @property
    def several(self) -> bool:
        """Whether ``/status`` is the tenant list (not one tenant's overview)."""
        return len(self.tenants) != 1

    # -- access -------------------------------------------------------------------------------
    def _token_matches(self, given: str) -> bool:
        assert self._token is not None
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self._token)

    def _session(self, store: StateStore, headers: Mapping[str, str]) -> tuple[str, Session] | None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                session = Sessions(store).get(value)
                if session is not None:
                    return value, session
        return None

    def _try_token(self, store: StateStore, view: "_View", given: str, client: str,
                   next_path: str) -> Response | None:
        """None when ``given`` is the token; else the answer: 429 while the client (or the
        token) must wait, without looking at the guess, or 401 with the login form."""
        throttle = LoginThrottle(store)
        wait = throttle.wait(client)
        if wait > 0:
            seconds = str(math.ceil(wait))
            log.warning("status page: a login try refused (throttled for %s s more)", seconds)
            return view.page(429, "login.html", next_path=_safe_next(next_path), wrong=False,
                             throttled=seconds, headers=[("Retry-After", seconds)])
        if self._token_matches(given):
            throttle.succeeded(client)
            return None
        throttle.failed(client, given.strip())
        log.warning("status page: a login with a wrong token")
        return self._login_page(view, next_path=next_path, wrong=True)

    # -- the request path ---------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Mapping[str, str],
               body: bytes = b"", client: str = "") -> Response:
        """One request; ``client``: its address, for the login throttle."""
        headers = {k.lower(): v for k, v in headers.items()}
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        lang = query.get("lang") if query.get("lang") in LANGUAGES else None
        view = _View(self, lang or self.language, explicit_lang=lang, path=url.path, query=query)
        if not self.enabled:
            return view.page(404, "message.html", title=view.t("disabled.title"),
                             text=view.t("disabled.body", var=TOKEN_VARIABLE))
        if method == "POST" and not _same_origin(headers):
            return self._csrf_refused(view, "a form posted from another site")
        try:
            with state_faults(self.state):
                refused = self._access(view, _Request(method, target, path, headers, body, client))
                if refused is not None:
                    return refused
                if method != "GET":
                    return view.page(405, "message.html", title=view.t("notfound.title"),
                                     text=view.t("notfound.body"))
                return self._page(view, path, url.path)
        except StateError as exc:    # damaged or unreadable: say so (the message is the CLI's)
            return view.page(503, "message.html", title=view.t("statefault.title"),
                             text=str(exc))

    def _access(self, view: "_View", request: "_Request") -> Response | None:
        """None when the request may see the pages (with a session, its CSRF token is then the
        view's); else the answer: the login, the logout, the login form, a refusal. On a
        writable store of its own, opened for this request (the page's is read-only)."""
        store = open_store(self.state)
        try:
            method, path = request.method, request.path
            if path == "/status/login" and method == "POST":
                return self._login(store, view, request)
            session = self._session(store, request.headers)
            if path == "/status/logout" and method == "POST":
                return self._logout(store, view, session, request.body)
            if session is not None:
                view.csrf = session[1].csrf
                return None
            auth = request.headers.get("authorization", "")
            next_path = request.target if method == "GET" else "/status"
            if auth[:7].lower() != "bearer ":
                return self._login_page(view, next_path=next_path)
            return self._try_token(store, view, auth[7:], request.client, next_path)
        finally:
            store.close()

    def _page(self, view: "_View", path: str, raw_path: str) -> Response:
        tenant, base, rest, raw_rest = self._route(path, raw_path)
        store = open_store(self.state)           # one connection per request thread
        try:
            store.make_read_only()
            if tenant is None:
                return view.tenant_list(store) if rest in ("", "/login") else view.not_found()
            view.at_tenant(tenant, base)
            data = _Data(store, tenant)
            if rest in ("", "/login"):
                return view.overview(data)
            if rest == "/problems":
                return view.problems(data)
            if rest == "/search":
                return view.search(data, view.query.get("q", ""))
            if rest.startswith("/record/"):
                return view.record(data, unquote(raw_rest[len("/record/"):]))
            return view.not_found()
        finally:
            store.close()

    def _route(self, path: str, raw_path: str) -> tuple[str | None, str, str, str]:
        """(tenant, the prefix of its pages, the page's path after it, the same as sent) of a
        request. The tenant is None for the tenant list (rest "") and for an unknown tenant
        (rest "?": not found)."""
        if path == "/status/t" or path.startswith("/status/t/"):
            name, _, rest = path[len("/status/t/"):].partition("/")
            tenant = unquote(name)
            if tenant not in self.tenants:
                return None, "", "?", ""
            parts = raw_path.rstrip("/").split("/", 4)        # '', status, t, tenant, rest
            raw_rest = "/" + parts[4] if len(parts) == 5 else ""
            return tenant, "/status/t/" + quote(tenant, safe=""), ("/" + rest if rest else ""), raw_rest
        rest, raw_rest = path[len("/status"):], raw_path[len("/status"):]
        if self.several:
            return None, "", rest, raw_rest
        return next(iter(self.tenants)), "/status", rest, raw_rest

    def _login_page(self, view: "_View", *, next_path: str, wrong: bool = False) -> Response:
        return view.page(401, "login.html", next_path=_safe_next(next_path), wrong=wrong,
                         headers=[("WWW-Authenticate", 'Bearer realm="hexaflow status"')])

    def _login(self, store: StateStore, view: "_View", request: "_Request") -> Response:
        # No CSRF token here: the form carries the secret itself, so a forged login cannot
        # succeed without it (and cross-site posts are refused above by their Origin).
        if len(request.body) > MAX_FORM:
            return view.page(413, "message.html", title=view.t("login.title"), text="")
        form = _form(request.body)
        if form.get("lang") in LANGUAGES:
            view = _View(self, form["lang"], explicit_lang=form["lang"], path=view.path,
                         query=view.query)
        next_path = _safe_next(form.get("next", "/status"))
        refused = self._try_token(store, view, form.get("token", ""), request.client, next_path)
        if refused is not None:
            return refused
        sid, _session = Sessions(store).create()
        secure = "; Secure" if request.headers.get("x-forwarded-proto", "").lower() == "https" else ""
        cookie = (f"{COOKIE}={sid}; Path=/status; Max-Age={SESSION_SECONDS}; HttpOnly; "
                  f"SameSite=Strict{secure}")
        return view.redirect(next_path, [("Set-Cookie", cookie)])

    def _logout(self, store: StateStore, view: "_View", session: tuple[str, Session] | None,
                body: bytes) -> Response:
        """End the session (its cookie then works nowhere). The form must carry the session's
        CSRF token: a cross-site page cannot log the admin out. Without a live session there
        is nothing to end: the cookie is cleared all the same."""
        if session is not None:
            if not csrf_matches(session[1], _form(body).get("csrf", "")):
                return self._csrf_refused(view, "a logout without the session's CSRF token")
            Sessions(store).end(session[0])
        return view.redirect("/status", [(
            "Set-Cookie", f"{COOKIE}=; Path=/status; Max-Age=0; HttpOnly; SameSite=Strict")])

    def _csrf_refused(self, view: "_View", what: str) -> Response:
        log.warning("status page: refused %s", what)
        return view.page(403, "message.html", title=view.t("csrf.title"), text=view.t("csrf.body"))


@dataclass(frozen=True)
class _Request:
    """What the access checks look at: the method, the target as sent, its path without a
    trailing slash, the headers (lower-case names), the body and the client's address."""
    method: str
    target: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    client: str


def _form(body: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _same_origin(headers: Mapping[str, str]) -> bool:
    """A browser names the page a POST comes from (Origin); one from another site is refused.
    Clients that send no Origin (curl, scripts) are not browsers riding a cookie."""
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("x-forwarded-host") or headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.split(",")[0].strip().lower()


def _safe_next(target: str) -> str:
    """Only a path of this page (no open redirect)."""
    url = urlsplit(target or "")
    if url.scheme or url.netloc or not url.path.startswith("/status") or \
            url.path.startswith("/status/log"):
        return "/status"
    return url.path + (f"?{url.query}" if url.query else "")


class _Data:
    """The bounded, read-only queries behind the pages."""

    def __init__(self, store: Any, tenant: str):
        self.store, self.tenant = store, tenant

    def flows(self) -> list[str]:
        return queries.flows(self.store, self.tenant)

    def entries_of_record(self, source_id: str) -> list[LedgerEntry]:
        out: list[LedgerEntry] = []
        for flow in self.flows():
            out.extend(self.store.entries_for_sources(self.tenant, flow, [source_id])
                       .get(source_id, []))
        return out[:RECORD_DOCUMENTS_SHOWN]


class _View:
    """One request's language and links, and the pages rendered with them."""

    def __init__(self, page: StatusPage, lang: str, *, explicit_lang: str | None, path: str,
                 query: Mapping[str, str]):
        self.app, self.lang, self.explicit_lang = page, lang, explicit_lang
        self.path, self.query = path, dict(query)
        self.labels = LABELS[lang]
        self.csrf = ""          # the session's CSRF token, for the forms that change state
        self.tenant: str | None = None      # the tenant whose page this is (None: the list)
        self.base = "/status"               # where its pages are: links stay under it

    def at_tenant(self, tenant: str, base: str) -> None:
        self.tenant, self.base = tenant, base

    @property
    def sources(self) -> Mapping[str, tuple[str, str]]:
        return self.app.tenants.get(self.tenant or "", {})

    # -- helpers the templates use --------------------------------------------------------------
    def t(self, key: str, **values: Any) -> str:
        text = self.labels[key]
        return text.format(**values) if values else text

    def label(self, prefix: str, name: str | None) -> str:
        """A translated state, outcome or resource name; the name itself when unknown."""
        return self.labels.get(f"{prefix}.{name}", name or "")

    def u(self, path: str, **params: Any) -> str:
        """A link that keeps the language chosen with ?lang=."""
        pairs = [(k, str(v)) for k, v in params.items() if v not in (None, "")]
        if self.explicit_lang:
            pairs.append(("lang", self.explicit_lang))
        return path + (("?" + urlencode(pairs)) if pairs else "")

    def at(self, page: str = "", **params: Any) -> str:
        """A link to one of this tenant's pages ("", "/problems", "/search"), under its prefix."""
        return self.u(self.base + (page or ("/" if self.base != "/status" else "")), **params)

    def record_url(self, source_id: str) -> str:
        return self.u(self.base + "/record/" + quote(source_id, safe=""))

    def tenant_url(self, tenant: str, page: str = "/") -> str:
        return self.u("/status/t/" + quote(tenant, safe="") + page)

    def lang_url(self, lang: str) -> str:
        pairs = [(k, v) for k, v in self.query.items() if k != "lang"] + [("lang", lang)]
        return self.path + "?" + urlencode(pairs)

    def age(self, seconds: float) -> str:
        """How long ago, as a heartbeat's age is read: seconds, then minutes, then hours."""
        if seconds < 120:
            return self.t("age.seconds", n=int(seconds))
        if seconds < 7200:
            return self.t("age.minutes", n=int(seconds // 60))
        return self.t("age.hours", n=int(seconds // 3600))

    def source_of(self, flow: str) -> str:
        connector, resource = self.sources.get(flow, ("", ""))
        return f"{connector}/{resource}" if connector else ""

    def resource_of(self, flow: str) -> str:
        return self.sources.get(flow, ("", ""))[1]

    # -- responses ----------------------------------------------------------------------------
    def page(self, status: int, template: str, *, headers: Iterable[tuple[str, str]] = (),
             **context: Any) -> Response:
        html = self.app.env.get_template(template).render(
            v=self, t=self.t, lang=self.lang, languages=LANGUAGES, tenant=self.tenant,
            now=_when(time.time()), when=_when, **{"throttled": "", **context})
        return Response(status, html.encode("utf-8"), headers=[*SECURITY_HEADERS, *headers])

    def redirect(self, location: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        if self.explicit_lang and "lang=" not in location:
            location += ("&" if "?" in location else "?") + f"lang={self.explicit_lang}"
        return Response(303, b"", headers=[*SECURITY_HEADERS, ("Location", location), *headers])

    # -- pages ----------------------------------------------------------------------------------
    def not_found(self) -> Response:
        return self.page(404, "message.html", title=self.t("notfound.title"),
                         text=self.t("notfound.body"))

    def tenant_list(self, store: Any) -> Response:
        """Every tenant: its flows, documents settled / in motion / rejected, open dead
        letters, its last run and a health word, each linking to the tenant's pages."""
        rows = []
        queues = queue_view.flow_queues(store)
        for tenant in sorted(self.app.tenants):
            counts = {"settled": 0, "moving": 0, "rejected": 0}
            for _flow, state, n in queries.document_counts(store, tenant):
                counts[_bucket(state)] += n
            letters = sum(queries.open_dead_letter_counts(store, tenant).values())
            runs = store.runs(tenant, limit=RUNS_SHOWN)
            latest: dict[str, str] = {}          # flow → status of its newest finished run
            for run in runs:
                if run["finished_at"]:
                    latest.setdefault(run["flow"], run["status"])
            health = ("failing" if "failed" in latest.values() else
                      "problems" if letters or counts["rejected"] else "ok")
            flows = sorted(set(self.app.tenants[tenant]) | set(queries.flows(store, tenant)))
            rows.append({"name": tenant, "flows": flows, "counts": counts, "letters": letters,
                         "last": runs[0] if runs else None, "health": health,
                         "queue": None if queues is None else
                         _queue_totals([q for q in queues if q.tenant == tenant])})
        return self.page(200, "tenants.html", tenants=rows, has_queue=queues is not None,
                         workers=queue_view.workers(store), stalled_after=queue_view.stalled_after())

    def overview(self, data: _Data) -> Response:
        store, tenant = data.store, data.tenant
        counts: dict[str, dict[str, int]] = {}
        for flow, state, n in queries.document_counts(store, tenant):
            counts.setdefault(flow, {})[state] = n
        letters = queries.open_dead_letter_counts(store, tenant)
        names = data.flows()
        flows = [{"name": flow, "source": self.source_of(flow),
                  "cursor": store.get_cursor(tenant, flow),
                  "states": sorted(counts.get(flow, {}).items(), key=lambda sn: _state_rank(sn[0])),
                  "letters": letters.get(flow, 0)} for flow in names]
        flow_filter = self.query.get("flow") or None
        state_filter = self.query.get("state") or None
        documents = queries.recent_entries(store, tenant, flow=flow_filter, state=state_filter,
                                            limit=DOCUMENTS_SHOWN)
        return self.page(200, "overview.html", flows=flows, runs=self._runs(store, tenant),
                         documents=documents, flow_filter=flow_filter, state_filter=state_filter,
                         shown=DOCUMENTS_SHOWN, queue=self._queue(store, tenant, names),
                         # Without a tenant list, the one tenant's overview is the top page.
                         workers=None if self.app.several else queue_view.workers(store),
                         stalled_after=queue_view.stalled_after())

    def _queue(self, store: Any, tenant: str, flows: list[str]) -> list[queue_view.FlowQueue] | None:
        """The tenant's jobs per flow, every flow it has listed (none waiting is news too);
        None without a job queue."""
        found = queue_view.flow_queues(store, tenant)
        if found is None:
            return None
        by_flow = {q.flow: q for q in found}
        names = sorted(set(self.sources) | set(flows) | set(by_flow))
        return [by_flow.get(name) or queue_view.FlowQueue(tenant, name) for name in names]

    def _runs(self, store: Any, tenant: str) -> list[dict[str, Any]]:
        out = []
        for run in store.runs(tenant, limit=RUNS_SHOWN):
            summary = json.loads(run["summary"] or "{}")
            totals: dict[str, int] = {}
            for counts in (summary.get("routes") or {}).values():
                for outcome, n in counts.items():
                    totals[outcome] = totals.get(outcome, 0) + n
            duration = (f"{run['finished_at'] - run['started_at']:.1f} s"
                        if run["finished_at"] else "")
            out.append({**run, "records": summary.get("records"),
                        "failed_records": summary.get("failed_records"),
                        "more_left": summary.get("more_left"), "duration": duration,
                        "totals": [(o, totals[o]) for o in OUTCOMES if totals.get(o)],
                        "routes": {r: {o: n for o, n in c.items() if o in OUTCOMES and n}
                                   for r, c in (summary.get("routes") or {}).items()}})
        return out

    def problems(self, data: _Data) -> Response:
        store, tenant = data.store, data.tenant
        letters = queries.dead_letters(store, tenant, limit=LETTERS_SHOWN)
        total = sum(queries.open_dead_letter_counts(store, tenant).values())
        conflicts = queries.recent_entries(store, tenant, state="conflict", limit=LETTERS_SHOWN)
        return self.page(200, "problems.html", letters=letters, total=total, conflicts=conflicts,
                         shown=LETTERS_SHOWN)

    def search(self, data: _Data, q: str) -> Response:
        store, tenant = data.store, data.tenant
        q = q.strip()[:200]
        documents: list[tuple[LedgerEntry, str, str]] = []       # entry, matched by, snippet
        letters: list[dict[str, Any]] = []
        if q:
            seen: set[tuple[str, str, str]] = set()

            def add(entries: Iterable[LedgerEntry], how: str) -> None:
                for e in entries:
                    if (e.flow, e.route, e.key) not in seen and len(documents) < SEARCH_SHOWN:
                        seen.add((e.flow, e.route, e.key))
                        documents.append((e, how, _snippet(e.payload, q) if how == "text" else ""))

            add(data.entries_of_record(q), "id")
            add(queries.entries_with_key(store, tenant, q, limit=SEARCH_SHOWN), "code")
            if not documents:      # an id or a code found its documents: no text search
                candidates = queries.entries_containing(store, tenant, q, limit=SEARCH_SHOWN * 4)
                add((e for e in candidates if _is_word_match(e.payload, q)), "text")
            letters = [d for d in queries.dead_letters(store, tenant, text=q, status=None,
                                                        limit=SEARCH_SHOWN * 4)
                       if d["source_id"] == q or d["key"] == q
                       or _is_word_match(d["record"] or "", q)
                       or _is_word_match(d["payload"] or "", q)][:SEARCH_SHOWN]
        records: dict[tuple[str, str], list[str]] = {}
        for e, _how, _snip in documents:
            records.setdefault((e.flow, e.source_id), []).append(e.key)
        for d in letters:
            records.setdefault((d["flow"], d["source_id"]), [])
        return self.page(200, "search.html", q=q, documents=documents, letters=letters,
                         records=[{"flow": f, "source_id": s, "codes": keys}
                                  for (f, s), keys in records.items()], shown=SEARCH_SHOWN)

    def record(self, data: _Data, source_id: str) -> Response:
        store, tenant = data.store, data.tenant
        documents = []
        for e in data.entries_of_record(source_id):
            events = store.events(tenant, e.flow, e.route, e.key)[-EVENTS_SHOWN:]
            documents.append({"e": e, "events": events, "payload": _pretty_json(e.payload)})
        letters = queries.dead_letters(store, tenant, source_id=source_id, status=None,
                                        limit=LETTERS_SHOWN)
        for d in letters:
            d["record_pretty"] = _pretty_json(d["record"])
            d["payload_pretty"] = _pretty_json(d["payload"])
        flows = sorted({d["e"].flow for d in documents} | {d["flow"] for d in letters})
        resource = next((self.resource_of(f) for f in flows if self.resource_of(f)), "")
        status = 200 if documents or letters else 404
        return self.page(status, "record.html", source_id=source_id, documents=documents,
                         letters=letters, flows=flows, resource=resource)


# The counts the tenant list shows: what the target holds for good (or was withdrawn), what is
# still on its way (to be sent, sent and waiting), and what the target refused.
MOVING_STATES = {"planned", "failed", "queued"}
REJECTED_STATES = {"rejected", "conflict"}


def _bucket(state: str) -> str:
    return "moving" if state in MOVING_STATES else "rejected" if state in REJECTED_STATES \
        else "settled"


def _queue_totals(queues: list[queue_view.FlowQueue]) -> list[tuple[str, int]]:
    """A tenant's jobs over all its flows, as the tenant list shows them: (what, how many)
    for each kind it has."""
    totals = [(what, sum(getattr(q, what) for q in queues))
              for what in ("waiting", "running", "stalled", "failed")]
    return [(what, n) for what, n in totals if n]


def _state_rank(state: str) -> int:
    return STATE_ORDER.index(state) if state in STATE_ORDER else len(STATE_ORDER)
