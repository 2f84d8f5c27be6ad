"""A MISA AMIS Kế toán sandbox: the open API's paths, envelope and asynchronous processing.

Real routes (reference §1–2): ``POST /api/oauth/actopen/connect`` and, with the
``X-MISA-AccessToken`` header, ``/apir/sync/actopen/{save, delete (HTTP DELETE), save_dictionary,
get_dictionary, get_dictionary_delete, get_list_inventory_balance, get_call_back_detail_error,
get_company_info}``. Business errors are HTTP 200 with ``Success: false``; ``Data`` is a JSON
string. ``save``, ``delete`` and ``save_dictionary`` only queue: a worker handles the calls one at
a time in arrival order, validates each voucher like MISA, keeps the result for
``get_call_back_detail_error`` and POSTs a signed callback to the configured URL.

Admin routes (``/_sandbox/``; the first ones are contracts in design.md):
- ``POST reset`` ``{"data": "demo"|"empty", "chart": <account preset>}`` (the chart of accounts
  of circular_99_2025, circular_200_2014 or circular_133_2016; default: the constructor's `chart`,
  itself circular_99_2025 by default); ``GET dictionary``;
  ``POST dictionary`` ``{"dictionary": [push-shaped entries], "delete": [{"dictionary_type", "code"}]}``
- ``GET requests``; ``POST requests/{org_refid}/generate | post | delete`` (the accountant)
- ``POST stock`` ``{"inventory_item_code", "stock_code", "quantity"}``; ``GET stock``
- ``POST faults`` (shared toolkit, plus ``token_ttl_s``); ``POST tokens/expire``
- ``POST callback`` ``{"url", "enabled", "key"}``; ``GET callback`` (delivery counts)
- ``POST options`` ``{"reject_duplicate_refno", "reject_parent_accounts", "processing_delay_ms",
  "accountant"}``; ``POST accountant/post_all`` generates and posts every accepted request
- ``GET ledger`` (``?org_refno=``) the posted journal and its balances (ledger.py); ``POST costs``
  ``{"costs": {item_code: unit cost}}``; ``POST chart`` ``{"accounts": [...], "bank_accounts": [...]}``
  replaces the chart of accounts and the bank accounts
- ``POST drain`` ``{"timeout_s"}`` waits until every queued call is processed; ``GET calls``
  lists the API calls received (function and batch sizes); ``GET stats`` counts requests by
  status and type, vouchers / dictionary entries received (and received more than once) and
  calls by function, without the payloads (cheap at any size).
"""
from __future__ import annotations

import bisect
import collections
import copy
import hmac
import logging
import secrets
import threading
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Mapping

import httpx

from hexaflow.connectors.sandbox_server import (Request, Response, SandboxApp, dumps,
                                                json_response)
from hexaflow.money import round_money, to_decimal
from hexaflow.timeutil import get_zone, parse_datetime

from . import demo_data, ledger
from .callbacks import (DELETE_PROCESSED, MODEL_STATE_POSTED, SAVE_PROCESSED, VOUCHER_CHANGED,
                        VOUCHER_GENERATED, build_callback)
from .validation import Lookup, validate_voucher

log = logging.getLogger("hexaflow.sandbox.misa")

VN = get_zone("Asia/Ho_Chi_Minh")
DEFAULT_TOKEN_TTL_S = 12 * 3600
MAX_TAKE = 100
MAX_SAVE = 100
MAX_DICTIONARY = 200
TICKS_AT_EPOCH = 621355968000000000
IS_CREATED_MESSAGE = "Đã sinh chứng từ kế toán, không thể cập nhật được."

# Read numbering (get_dictionary data_type) and push numbering (dictionary_type) -> table, key.
READ_TABLES = {1: ("account_objects", "account_object_code"),
               2: ("inventory_items", "inventory_item_code"),
               3: ("stocks", "stock_code"), 4: ("units", "unit_name"),
               5: ("accounts", "account_number"), 8: ("bank_accounts", "bank_account_number")}
PUSH_TABLES = {1: READ_TABLES[1], 3: READ_TABLES[2], 5: READ_TABLES[3], 6: READ_TABLES[4],
               7: READ_TABLES[8]}
ID_FIELDS = {"account_objects": "account_object_id", "inventory_items": "inventory_item_id",
             "stocks": "stock_id", "units": "unit_id", "accounts": "account_id",
             "bank_accounts": "bank_account_id"}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def ok(data: Any = None, custom: Any = None) -> Response:
    return json_response({"Success": True, "ErrorCode": None, "ErrorMessage": None,
                          "Data": None if data is None else dumps(data), "CustomData": custom})


def fail(code: str, message: str) -> Response:
    # MISA answers business errors with HTTP 200.
    return json_response({"Success": False, "ErrorCode": code, "ErrorMessage": message,
                          "Data": None, "CustomData": None})


def _stamp_text(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    try:
        if len(text) > 10 and ("+" in text[10:] or text.endswith("Z") or "-" in text[10:]):
            return parse_datetime(text)
        return datetime.fromisoformat(text[:26]).replace(tzinfo=VN)
    except ValueError:
        return None


class MisaSandbox(SandboxApp):
    name = "misa"

    def __init__(self, app_id: str, access_code: str, org_company_code: str, data: str = "demo",
                 seed: int = 1, *, token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
                 callback_url: str | None = None, callback_delay_s: float = 0.02,
                 callback_key: str | None = None, reject_duplicate_refno: bool = True,
                 chart: str | None = None):
        super().__init__()
        self.app_id = app_id
        self.access_code = access_code
        self.org_company_code = org_company_code
        self.seed = seed
        self.token_ttl_s = float(token_ttl_s)
        self.callback_url = callback_url
        self.callback_enabled = callback_url is not None
        self.callback_key = callback_key
        self.callback_stats: dict[str, Any] = {"delivered": 0, "failed": 0, "last_error": None}
        self.processing_delay_s = float(callback_delay_s)
        self.reject_duplicate_refno = reject_duplicate_refno
        self.reject_parent_accounts = True
        self.tokens: dict[str, float] = {}
        self._work = threading.Condition(self.lock)
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._busy = False
        self._stopping = False
        self._last_stamp = datetime(2020, 1, 1, tzinfo=VN)
        self._seq = 0
        self.chart = chart or demo_data.DEFAULT_CHART     # what a reset without a chart gives
        self.reset(data)
        self._routes_setup()
        self._worker = threading.Thread(target=self._run_worker, name="misa-sandbox-worker",
                                        daemon=True)
        self._worker.start()

    # -- state ------------------------------------------------------------------------
    def reset(self, data: str = "empty", chart: str | None = None) -> None:
        """Back to the company setup (``data`` "empty" or "demo") with the chart of accounts of
        the account preset ``chart`` (a key of demo_data.CHARTS; default: the sandbox's own)."""
        chart = chart or self.chart
        if chart not in demo_data.CHARTS:
            raise ValueError(f"unknown chart {chart!r}; known: {sorted(demo_data.CHARTS)}")
        with self.lock:
            self._queue.clear()
            self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in ID_FIELDS}
            self._parents: dict[str, list[str]] | None = None    # account -> sub-accounts
            # The accountant (accountant mode, post_all, the admin routes) and the books.
            self.accountant = False
            self.journal = ledger.Journal()
            self.costs: dict[str, Decimal] = {}
            self.synced: dict[tuple[str, str], datetime] = {}
            self.deleted: list[tuple[str, dict[str, Any], datetime]] = []
            self.balances: dict[tuple[str, str], Decimal] = {}
            self.requests: dict[str, dict[str, Any]] = {}
            # refno_finance -> org_refids using it, so the duplicate check is not a scan of
            # every request (a run of 100,000 orders queues more than 100,000 of them).
            self._refno_refs: dict[str, dict[str, None]] = {}
            self.results: list[dict[str, Any]] = []
            self._result_times: list[datetime] = []    # sorted, parallel to results
            # How many times each voucher (org_refid) and dictionary entry (type:code) came
            # in a save call, accepted or not: "written exactly once" checks (GET stats).
            self.received: collections.Counter[str] = collections.Counter()
            self.dictionary_received: collections.Counter[str] = collections.Counter()
            self.calls: list[dict[str, Any]] = []
            self.dictionary_errors: list[dict[str, Any]] = []
            if data == "demo":
                company, balances = demo_data.demo_company(self.seed, chart)
            else:
                company, balances = demo_data.empty_company(chart), []
            for table, rows in company.items():
                for row in rows:
                    self._store(table, row)
            for item, stock, quantity, _cost in balances:
                self.balances[(item, stock)] = quantity

    def _tick(self) -> datetime:
        now = datetime.now(VN)
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return now

    def _store(self, table: str, entry: Mapping[str, Any]) -> None:
        key_field = READ_TABLES[[k for k, v in READ_TABLES.items() if v[0] == table][0]][1]
        code = str(entry[key_field])
        stamp = self._tick()
        existing = self.tables[table].get(code)
        record = dict(existing or {})
        record.update({k: v for k, v in entry.items() if k not in ("app_id", "org_company_code")})
        id_field = ID_FIELDS[table]
        if not record.get(id_field):
            record[id_field] = demo_data.make_id(table, code)
        record.setdefault("inactive", False)
        record.setdefault("branch_id", demo_data.BRANCH_ID)
        if table == "inventory_items":
            record.setdefault("inventory_item_type", 0)
            record.setdefault("unit_price", Decimal(0))
        record.setdefault("created_date", _stamp_text(stamp))
        record["modified_date"] = _stamp_text(stamp)
        self.tables[table][code] = record
        self.synced[(table, code)] = stamp
        if table == "accounts":
            self._parents = None

    def _delete_entry(self, table: str, code: str) -> bool:
        record = self.tables[table].pop(code, None)
        if record is None:
            return False
        self.synced.pop((table, code), None)
        if table == "accounts":
            self._parents = None
        key_field = [v[1] for v in READ_TABLES.values() if v[0] == table][0]
        id_field = ID_FIELDS[table]
        self.deleted.append((table, {id_field: record.get(id_field), key_field: code},
                             self._tick()))
        return True

    def apply_dictionary(self, entries: list[Any]) -> None:
        for entry in entries:
            problem = None
            if not isinstance(entry, Mapping):
                problem = "entry is not an object"
            else:
                try:
                    table, key_field = PUSH_TABLES[int(entry["dictionary_type"])]
                except (KeyError, TypeError, ValueError):
                    table, key_field = "", ""
                    problem = f"dictionary_type {entry.get('dictionary_type')!r} is not supported"
                if not problem and not entry.get(key_field):
                    problem = f"{key_field} is required"
            if problem:
                self.dictionary_errors.append({"entry": entry, "error_code": "InvalidParam",
                                               "error_message": problem})
                continue
            self._store(table, entry)

    def _lookup(self) -> Lookup:
        def refno_owner(refno: str) -> str | None:
            for ref in self._refno_refs.get(refno, ()):
                req = self.requests.get(ref)
                if req is not None and req["refno_finance"] == refno and req["status"] in (
                        "accepted", "generated", "posted"):
                    return ref
            return None
        return Lookup(has_customer=lambda c: c in self.tables["account_objects"],
                      has_item=lambda c: c in self.tables["inventory_items"],
                      has_stock=lambda c: c in self.tables["stocks"],
                      refno_owner=refno_owner, sub_accounts=self._sub_accounts,
                      has_bank_account=lambda n: n in self.tables["bank_accounts"],
                      catalogue=self._catalogue(),
                      reject_duplicate_refno=self.reject_duplicate_refno,
                      reject_parent_accounts=self.reject_parent_accounts)

    # -- the chart of accounts, costs ---------------------------------------------------
    def _sub_accounts(self, number: str) -> list[str] | None:
        """``number``'s sub-accounts: the chart's numbers that extend it (111 → 1111), the
        numbering of Vietnamese charts; None when the chart has no such account."""
        if number not in self.tables["accounts"]:
            return None
        if self._parents is None:
            numbers = sorted(self.tables["accounts"])
            self._parents = {n: [m for m in numbers if m != n and m.startswith(n)] for n in numbers}
        return self._parents[number]

    def _account_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """A chart entry as get_dictionary serves it: with its level, parent and is_parent."""
        number = str(row["account_number"])
        parents = [n for n in self.tables["accounts"] if n != number and number.startswith(n)]
        parent = max(parents, key=len) if parents else None
        return {**row, "grade": len(parents) + 1, "is_parent": bool(self._sub_accounts(number)),
                "parent_id": self.tables["accounts"][parent]["account_id"] if parent else None}

    def _cost(self, item_code: str) -> Decimal:
        """The unit cost price of an item (a stand-in for AMIS's costing): set by POST
        /_sandbox/costs, else the item's ``unit_price`` in the dictionary, else 0."""
        if item_code in self.costs:
            return self.costs[item_code]
        item = self.tables["inventory_items"].get(item_code) or {}
        return to_decimal(item.get("unit_price") or 0)

    def _catalogue(self) -> ledger.Catalogue:
        items, stocks = self.tables["inventory_items"], self.tables["stocks"]

        def item_type(code: str) -> int | None:
            item = items.get(code)
            return None if item is None else int(item.get("inventory_item_type") or 0)
        return ledger.Catalogue(item_type=item_type, cost=self._cost,
                                stock_account=lambda c: (stocks.get(c) or {}).get("inventory_account"))

    # -- routes -----------------------------------------------------------------------
    def _routes_setup(self) -> None:
        api = "/apir/sync/actopen/"
        self.add("POST", "/api/oauth/actopen/connect", self.connect)
        self.add("POST", api + "save", self.save)
        self.add("DELETE", api + "delete", self.delete)
        self.add("POST", api + "save_dictionary", self.save_dictionary)
        self.add("POST", api + "get_dictionary", lambda r: self.get_dictionary(r, False))
        self.add("POST", api + "get_dictionary_delete", lambda r: self.get_dictionary(r, True))
        self.add("POST", api + "get_list_inventory_balance", self.get_inventory_balance)
        self.add("POST", api + "get_call_back_detail_error", self.get_callback_results)
        self.add("POST", api + "get_company_info", self.get_company_info)
        admin = "/_sandbox/"
        self.add("POST", admin + "reset", self._admin_reset)
        self.add("GET", admin + "dictionary", self._admin_dictionary)
        self.add("POST", admin + "dictionary", self._admin_set_dictionary)
        self.add("GET", admin + "requests", self._admin_requests)
        self.add("POST", admin + r"requests/(?P<org_refid>[^/]+)/(?P<action>generate|post|delete)",
                 self._admin_request_action)
        self.add("POST", admin + "accountant/post_all", self._admin_post_all)
        self.add("GET", admin + "ledger", self._admin_ledger)
        self.add("POST", admin + "costs", self._admin_set_costs)
        self.add("POST", admin + "chart", self._admin_set_chart)
        self.add("POST", admin + "stock", self._admin_set_stock)
        self.add("GET", admin + "stock", self._admin_stock)
        self.add("POST", admin + "tokens/expire", self._admin_expire_tokens)
        self.add("POST", admin + "callback", self._admin_set_callback)
        self.add("GET", admin + "callback", lambda r: json_response(self._callback_public()))
        self.add("POST", admin + "options", self._admin_options)
        self.add("POST", admin + "drain", self._admin_drain)
        self.add("GET", admin + "calls", lambda r: json_response({"calls": list(self.calls)}))
        self.add("GET", admin + "stats", self._admin_stats)

    def on_faults(self, body: dict[str, Any]) -> None:
        # Like the other fault switches, a faults call without token_ttl_s restores the default.
        ttl = body.get("token_ttl_s")
        self.token_ttl_s = float(ttl) if ttl else float(DEFAULT_TOKEN_TTL_S)

    # -- auth -------------------------------------------------------------------------
    def connect(self, req: Request) -> Response:
        body = self._body(req)
        if body is None:
            return fail("InvalidParam", "Dữ liệu đầu vào không hợp lệ (body is not JSON)")
        for name in ("app_id", "access_code", "org_company_code"):
            if not body.get(name):
                return fail("InvalidParam", f"{name} không được để trống")
        if body["app_id"] != self.app_id:
            return fail("InvalidAppID", "Mã ứng dụng (app_id) không hợp lệ")
        if not hmac.compare_digest(str(body["access_code"]), self.access_code):
            return fail("InvalidAccessToken", "Mã kết nối (access_code) không hợp lệ")
        if body["org_company_code"] != self.org_company_code:
            return fail("InvalidParam",
                        f"org_company_code = {body['org_company_code']} không hợp lệ")
        now = time.time()
        with self.lock:
            token = secrets.token_urlsafe(32)
            expires = now + self.token_ttl_s
            self.tokens[token] = expires
        expires_vn = datetime.fromtimestamp(expires, VN)
        ticks = TICKS_AT_EPOCH + int(expires * 10_000_000)
        return ok({"access_token": token, "expired_time": expires_vn.isoformat(timespec="seconds"),
                   "expired_time_ticks": ticks, "app_name": "hexaflow sandbox",
                   "tenant_code": self.org_company_code})

    @staticmethod
    def _body(req: Request) -> dict[str, Any] | None:
        try:
            body = req.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _authorise(self, req: Request, company: bool = True) -> dict[str, Any] | Response:
        """The request's JSON body once the token, app and company check out; else the refusal."""
        token = req.header("X-MISA-AccessToken")
        with self.lock:
            expires = self.tokens.get(token or "")
        if not token or expires is None:
            return fail("InvalidToken", "Token không hợp lệ")
        if time.time() >= expires:
            return fail("ExpiredToken", "Token đã hết hạn")
        body = self._body(req)
        if body is None:
            return fail("InvalidParam", "Dữ liệu đầu vào không hợp lệ (body is not JSON)")
        if body.get("app_id") != self.app_id:
            return fail("InvalidAppID", "Mã ứng dụng (app_id) không hợp lệ")
        if company and body.get("org_company_code") != self.org_company_code:
            return fail("InvalidParam",
                        f"org_company_code = {body.get('org_company_code')} không hợp lệ")
        return body

    def _paging(self, body: Mapping[str, Any]) -> tuple[int, int] | Response:
        try:
            skip, take = int(body.get("skip") or 0), int(body.get("take") or 0)
        except (TypeError, ValueError):
            return fail("InvalidParam", "skip/take không hợp lệ")
        if take <= 0 or take > MAX_TAKE or skip < 0:
            return fail("InvalidParam", f"take phải từ 1 đến {MAX_TAKE} (take must be 1..{MAX_TAKE})")
        return skip, take

    def _log_call(self, function: str, **sizes: int) -> None:
        self.calls.append({"function": function, "at": _stamp_text(datetime.now(VN)), **sizes})

    # -- writes (queued) --------------------------------------------------------------
    def save(self, req: Request) -> Response:
        body = self._authorise(req)
        if isinstance(body, Response):
            return body
        vouchers, dictionary = body.get("voucher") or [], body.get("dictionary") or []
        references = body.get("reference") or []
        if not isinstance(vouchers, list) or not isinstance(dictionary, list) \
                or not isinstance(references, list):
            return fail("InvalidParam", "voucher, dictionary và reference phải là mảng")
        with self.lock:      # refused calls are logged too: the log shows what clients sent
            self._log_call("save", vouchers=len(vouchers), dictionary=len(dictionary))
        if not vouchers and not dictionary:
            return fail("InvalidParam", "Không có dữ liệu chứng từ (voucher is empty)")
        if len(vouchers) > MAX_SAVE:
            return fail("InvalidParam", f"Số chứng từ tối đa mỗi lần gọi là {MAX_SAVE} "
                                        f"(at most {MAX_SAVE} vouchers per call)")
        if len(dictionary) > MAX_DICTIONARY:
            return fail("InvalidParam", f"Số danh mục tối đa mỗi lần gọi là {MAX_DICTIONARY}")
        for voucher in vouchers:
            if not isinstance(voucher, dict) or not voucher.get("org_refid"):
                return fail("InvalidParam", "org_refid không được để trống")
        with self._work:
            self._seq += 1
            self._count_dictionary(dictionary)
            for voucher in vouchers:
                ref = str(voucher["org_refid"])
                self.received[ref] += 1
                existing = self.requests.get(ref)
                if existing and existing["status"] in ("generated", "posted"):
                    continue          # the worker reports IsCreatedVoucher
                entry = self._request_entry(voucher, self._seq, existing)
                entry["references"] = [r for r in references
                                       if isinstance(r, dict) and str(r.get("org_refid")) == ref]
                self.requests[ref] = entry
                if existing is not None and existing["refno_finance"] != entry["refno_finance"]:
                    self._refno_refs.get(str(existing["refno_finance"]), {}).pop(ref, None)
                self._refno_refs.setdefault(str(entry["refno_finance"]), {})[ref] = None
            self._queue.append({"kind": "save", "seq": self._seq, "vouchers": vouchers,
                                "dictionary": dictionary})
            self._work.notify_all()
        return ok()

    @staticmethod
    def _request_entry(voucher: Mapping[str, Any], seq: int,
                       existing: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"org_refid": str(voucher["org_refid"]), "voucher_type": voucher.get("voucher_type"),
                "reftype": voucher.get("reftype"), "refno_finance": voucher.get("refno_finance"),
                "org_refno": voucher.get("org_refno"), "status": "queued", "errors": [],
                "payload": copy.deepcopy(voucher), "_seq": seq,
                "_refid": (existing or {}).get("_refid")}

    def delete(self, req: Request) -> Response:
        body = self._authorise(req)
        if isinstance(body, Response):
            return body
        vouchers = body.get("voucher") or []
        if not isinstance(vouchers, list) or not vouchers:
            return fail("InvalidParam", "voucher không được để trống")
        with self.lock:
            self._log_call("delete", vouchers=len(vouchers))
        if len(vouchers) > MAX_SAVE:
            return fail("InvalidParam", f"Số chứng từ tối đa mỗi lần gọi là {MAX_SAVE}")
        if any(not isinstance(v, dict) or not v.get("org_refid") for v in vouchers):
            return fail("InvalidParam", "org_refid không được để trống")
        self._enqueue({"kind": "delete", "vouchers": vouchers})
        return ok()

    def save_dictionary(self, req: Request) -> Response:
        body = self._authorise(req)
        if isinstance(body, Response):
            return body
        entries = body.get("dictionary") or []
        if not isinstance(entries, list) or not entries:
            return fail("InvalidParam", "dictionary không được để trống")
        with self.lock:
            self._log_call("save_dictionary", dictionary=len(entries))
        if len(entries) > MAX_DICTIONARY:
            return fail("InvalidParam", f"Số danh mục tối đa mỗi lần gọi là {MAX_DICTIONARY} "
                                        f"(at most {MAX_DICTIONARY} entries per call)")
        with self.lock:
            self._count_dictionary(entries)
        self._enqueue({"kind": "dictionary", "dictionary": entries})
        return ok()

    def _count_dictionary(self, entries: list[Any]) -> None:
        for entry in entries:
            if isinstance(entry, Mapping):
                dtype = _int_or_none(entry.get("dictionary_type"))
                table = PUSH_TABLES.get(dtype) if dtype is not None else None
                code = entry.get(table[1]) if table else None
                self.dictionary_received[f"{entry.get('dictionary_type')}:{code}"] += 1

    def _enqueue(self, call: dict[str, Any]) -> None:
        """Queue a call for the background worker, in arrival order (MISA processes FIFO)."""
        with self._work:
            self._seq += 1
            self._queue.append(dict(call, seq=self._seq))
            self._work.notify_all()

    # -- the worker -------------------------------------------------------------------
    def _run_worker(self) -> None:
        while True:
            with self._work:
                while not self._queue and not self._stopping:
                    self._work.wait(0.5)
                if self._stopping:
                    return
                job = self._queue.popleft()
                self._busy = True
            try:
                time.sleep(self.processing_delay_s)
                with self.lock:
                    callbacks = self._process(job)
                for data_type, data in callbacks:
                    self._deliver(data_type, data)
            except Exception:  # a sandbox bug must show in the log, not stop the worker
                log.exception("MISA sandbox: processing a queued call failed")
            finally:
                with self._work:
                    self._busy = False
                    self._work.notify_all()

    def close(self) -> None:
        with self._work:
            self._stopping = True
            self._work.notify_all()

    def _process(self, job: dict[str, Any]) -> list[tuple[int, Any]]:
        if job["kind"] == "dictionary":
            self.apply_dictionary(job["dictionary"])
            return []
        session = str(uuid.uuid4())
        if job["kind"] == "delete":
            items = [self._process_delete(v, session) for v in job["vouchers"]]
            self._record(DELETE_PROCESSED, items)
            return [(DELETE_PROCESSED, items)]
        # MISA creates the master data that rides along before it looks at the vouchers.
        self.apply_dictionary(job["dictionary"])
        items = [self._process_voucher(v, job["seq"], session) for v in job["vouchers"]]
        if not items:
            return []
        self._record(SAVE_PROCESSED, items)
        callbacks: list[tuple[int, Any]] = [(SAVE_PROCESSED, items)]
        if self.accountant:      # accountant mode: what the call got accepted is posted at once
            for item in items:
                request = self.requests.get(item["org_refid"])
                if item["success"] and request is not None and request["status"] == "accepted":
                    callbacks.extend(self._generate_and_post(request))
        return callbacks

    @staticmethod
    def _item(voucher: Mapping[str, Any], session: str, code: str | None = None,
              message: str | None = None) -> dict[str, Any]:
        return {"org_refid": str(voucher.get("org_refid")), "success": code is None,
                "error_code": code, "error_message": message,
                "error_call_back_message": message, "session_id": session,
                "voucher_type": voucher.get("voucher_type")}

    def _process_voucher(self, voucher: dict[str, Any], seq: int, session: str) -> dict[str, Any]:
        ref = str(voucher["org_refid"])
        request = self.requests.get(ref)
        if request is not None and request["status"] in ("generated", "posted"):
            return self._item(voucher, session, "IsCreatedVoucher", IS_CREATED_MESSAGE)
        problems = validate_voucher(voucher, self._lookup())
        # Only the latest save of a voucher decides its request's status.
        latest = request if request is not None and request["_seq"] == seq else None
        if problems:
            message = "; ".join(p.message for p in problems)
            if latest is not None:
                latest["status"] = "rejected"
                latest["errors"] = [p.as_dict() for p in problems]
            return self._item(voucher, session, problems[0].code, message)
        if latest is not None:
            latest["status"] = "accepted"
            latest["errors"] = []
        return self._item(voucher, session)

    def _process_delete(self, voucher: Mapping[str, Any], session: str) -> dict[str, Any]:
        request = self.requests.get(str(voucher["org_refid"]))
        if request is None or request["status"] == "deleted":
            return self._item(voucher, session, "VoucherNotFound",
                              "Không tìm thấy chứng từ (request not found)")
        if request["status"] in ("generated", "posted"):
            return self._item(voucher, session, "IsCreatedVoucher", IS_CREATED_MESSAGE)
        request["status"] = "deleted"
        return self._item(voucher, session)

    def _record(self, data_type: int, items: list[dict[str, Any]],
                model_state: int | None = None) -> None:
        now = datetime.now(VN)
        if self._result_times and now < self._result_times[-1]:
            now = self._result_times[-1]          # the clock stepped back: keep them sorted
        created = _stamp_text(now)
        for item in items:
            row = {**item, "data_type": data_type, "created_date": created}
            if model_state is not None:
                row["model_state"] = model_state
            self.results.append(row)
            self._result_times.append(now)

    def _deliver(self, data_type: int, data: Any) -> None:
        url, enabled = self.callback_url, self.callback_enabled
        if not url or not enabled:
            return
        body = build_callback(data_type, data, app_id=self.app_id,
                              org_company_code=self.org_company_code,
                              key=self.callback_key or self.app_id)
        try:
            response = httpx.post(url, content=dumps(body).encode("utf-8"),
                                  headers={"Content-Type": "application/json"}, timeout=5.0)
            delivered = response.status_code < 300
            error = None if delivered else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            delivered, error = False, type(exc).__name__
        with self.lock:
            self.callback_stats["delivered" if delivered else "failed"] += 1
            if error:
                self.callback_stats["last_error"] = error

    # -- reads ------------------------------------------------------------------------
    def get_dictionary(self, req: Request, deleted: bool) -> Response:
        body = self._authorise(req, company=False)
        if isinstance(body, Response):
            return body
        paging = self._paging(body)
        if isinstance(paging, Response):
            return paging
        skip, take = paging
        try:
            data_type = int(body["data_type"])
        except (KeyError, TypeError, ValueError):      # missing, None, or not a number
            return fail("InvalidParam", "data_type không hợp lệ")
        since = _parse_time(body.get("last_sync_time"))
        if body.get("last_sync_time") and since is None:
            return fail("InvalidParam", "last_sync_time không hợp lệ")
        with self.lock:
            self._log_call("get_dictionary_delete" if deleted else "get_dictionary")
            if data_type == 6:
                rows = [] if deleted else [self._branch()]
            elif data_type not in READ_TABLES:
                rows = []
            else:
                table = READ_TABLES[data_type][0]
                if deleted:
                    found = [(stamp, dict(row, deleted_date=_stamp_text(stamp)))
                             for t, row, stamp in self.deleted if t == table]
                else:
                    found = [(self.synced[(table, code)], copy.deepcopy(row))
                             for code, row in self.tables[table].items()]
                    if table == "accounts":
                        found = [(stamp, self._account_row(row)) for stamp, row in found]
                found = [f for f in found if since is None or f[0] > since]
                found.sort(key=lambda f: f[0])
                rows = [row for _stamp, row in found]
            page = rows[skip:skip + take]
            last_sync = _stamp_text(self._last_stamp)
        return ok(page, {"LastSyncTime": last_sync})

    def _branch(self) -> dict[str, Any]:
        return {"organization_unit_id": demo_data.BRANCH_ID,
                "organization_unit_code": self.org_company_code,
                "organization_unit_name": "Công ty sandbox", "organization_unit_type_id": 1,
                "inactive": False}

    def get_inventory_balance(self, req: Request) -> Response:
        body = self._authorise(req)
        if isinstance(body, Response):
            return body
        paging = self._paging(body)
        if isinstance(paging, Response):
            return paging
        skip, take = paging
        with self.lock:
            self._log_call("get_list_inventory_balance")
            rows = [self._balance_row(item, stock, qty)
                    for (item, stock), qty in sorted(self.balances.items())]
            if body.get("stock_id"):
                rows = [r for r in rows if r["stock_id"] == body["stock_id"]]
        return ok(rows[skip:skip + take], {"LastSyncTime": _stamp_text(datetime.now(VN))})

    def _balance_row(self, item_code: str, stock_code: str, quantity: Decimal) -> dict[str, Any]:
        item = self.tables["inventory_items"].get(item_code, {})
        stock = self.tables["stocks"].get(stock_code, {})
        cost = self._cost(item_code)
        return {"inventory_item_id": item.get("inventory_item_id"),
                "inventory_item_code": item_code,
                "inventory_item_name": item.get("inventory_item_name"),
                "stock_id": stock.get("stock_id"), "stock_code": stock_code,
                "stock_name": stock.get("stock_name"),
                "organization_unit_id": demo_data.BRANCH_ID,
                "organization_unit_code": self.org_company_code,
                "organization_unit_name": "Công ty sandbox",
                "quantity_balance": quantity, "amount_balance": round_money(quantity * cost),
                "unit_price": cost}

    def get_callback_results(self, req: Request) -> Response:
        body = self._authorise(req, company=False)
        if isinstance(body, Response):
            return body
        paging = self._paging(body)
        if isinstance(paging, Response):
            return paging
        skip, take = paging
        start, end = _parse_time(body.get("from_date")), _parse_time(body.get("to_date"))
        if start is None or end is None:
            return fail("InvalidParam", "from_date/to_date không hợp lệ")
        with self.lock:
            self._log_call("get_call_back_detail_error")
            # Results are kept in time order: one page costs the page, not the whole log.
            low = bisect.bisect_left(self._result_times, start)
            high = bisect.bisect_right(self._result_times, end)
            rows = self.results[low + skip:min(high, low + skip + take)]
        return ok(rows)

    def get_company_info(self, req: Request) -> Response:
        body = self._authorise(req, company=False)
        if isinstance(body, Response):
            return body
        return ok({"company_name": "Công ty sandbox", "company_tax_code": self.org_company_code,
                   "branch_id": demo_data.BRANCH_ID})

    # -- admin ------------------------------------------------------------------------
    def _admin_reset(self, req: Request) -> Response:
        body = self._body(req) or {}
        data = body.get("data", "empty")
        chart = body.get("chart") or self.chart
        if data not in ("demo", "empty"):
            return json_response({"error": "data must be 'demo' or 'empty'"}, 400)
        if chart not in demo_data.CHARTS:
            return json_response({"error": f"chart must be one of {sorted(demo_data.CHARTS)}"}, 400)
        self.reset(data, chart)
        return json_response({"reset": data, "chart": chart})

    def _admin_dictionary(self, req: Request) -> Response:
        with self.lock:
            return json_response({t: list(rows.values()) for t, rows in self.tables.items()})

    def _admin_set_dictionary(self, req: Request) -> Response:
        body = self._body(req) or {}
        with self.lock:
            before = len(self.dictionary_errors)
            self.apply_dictionary(list(body.get("dictionary") or []))
            errors = self.dictionary_errors[before:]
            missing = []
            for entry in body.get("delete") or []:
                table = PUSH_TABLES.get(int(entry.get("dictionary_type", 0)), ("", ""))[0]
                if not table or not self._delete_entry(table, str(entry.get("code"))):
                    missing.append(entry)
        status = 400 if errors or missing else 200
        return json_response({"errors": errors, "not_found": missing}, status)

    def _admin_requests(self, req: Request) -> Response:
        with self.lock:
            public = [{k: v for k, v in r.items() if not k.startswith("_")}
                      for r in self.requests.values()]
        return json_response({"requests": public})

    def _admin_request_action(self, req: Request) -> Response:
        ref, action = req.params["org_refid"], req.params["action"]
        with self.lock:
            request = self.requests.get(ref)
            if request is None:
                return json_response({"error": f"no request {ref}"}, 404)
            status = request["status"]
            if action == "delete":
                # Deleting in AMIS's UI sends no callback (reference §2.6).
                request["status"] = "deleted"
                return json_response(self._public(request))
            wanted = {"generate": "accepted", "post": "generated"}[action]
            if status != wanted:
                return json_response({"error": f"cannot {action} a request that is {status}; "
                                               f"it must be {wanted}"}, 409)
            try:
                callback = self._generate(request) if action == "generate" else self._post(request)
            except ledger.LedgerError as exc:
                return json_response({"error": str(exc)}, 409)
            public = self._public(request)
        self._deliver(*callback)
        return json_response(public)

    # -- the accountant: generate and post (admin routes, accountant mode, post_all) -----
    def _generate(self, request: dict[str, Any]) -> tuple[int, Any]:
        """Lập CT kế toán: an accepted request becomes a voucher (callback 18). The caller holds
        the lock, checked the status and delivers the returned callback (data type, data)."""
        request["status"] = "generated"
        request["_refid"] = request.get("_refid") or str(uuid.uuid4())
        item = {**self._item(self._voucher_ref(request), "accountant"), "refid": request["_refid"]}
        self._record(VOUCHER_GENERATED, [item])
        return VOUCHER_GENERATED, [item]

    def _post(self, request: dict[str, Any]) -> tuple[int, Any]:
        """Ghi sổ: a generated voucher is posted to the journal, stock moves by the journal's
        quantities (callback 22, ModelState 7). Raises LedgerError, posting nothing, when the
        journal would not balance (validation refuses such vouchers, so it means a sandbox bug
        or a chart / item changed since)."""
        posting = ledger.post(request["payload"], self._catalogue())
        ledger.check_balanced(posting, request["org_refid"])
        self.journal.add(request, posting)
        for row in posting.rows:
            if row.quantity is not None and row.inventory_item_code and row.stock_code:
                key = (row.inventory_item_code, row.stock_code)
                self.balances[key] = self.balances.get(key, Decimal(0)) + row.quantity
        request["status"] = "posted"
        item = {**self._voucher_ref(request), "refid": request["_refid"], "success": True}
        self._record(VOUCHER_CHANGED, [item], model_state=MODEL_STATE_POSTED)
        return VOUCHER_CHANGED, {"voucher": [item], "custom_param": {"ModelState": MODEL_STATE_POSTED}}

    def _generate_and_post(self, request: dict[str, Any]) -> list[tuple[int, Any]]:
        """What the accountant does with an accepted (or already generated) request."""
        callbacks = []
        if request["status"] == "accepted":
            callbacks.append(self._generate(request))
        if request["status"] == "generated":
            try:
                callbacks.append(self._post(request))
            except ledger.LedgerError:
                log.exception("MISA sandbox: request %s generated but not posted",
                              request["org_refid"])
        return callbacks

    @staticmethod
    def _public(request: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in request.items() if not k.startswith("_")}

    @staticmethod
    def _voucher_ref(request: Mapping[str, Any]) -> dict[str, Any]:
        return {"org_refid": request["org_refid"], "voucher_type": request["voucher_type"],
                "refno_finance": request["refno_finance"]}

    def _admin_post_all(self, req: Request) -> Response:
        callbacks: list[tuple[int, Any]] = []
        with self.lock:
            waiting = [r for r in self.requests.values() if r["status"] in ("accepted", "generated")]
            for request in waiting:
                callbacks.extend(self._generate_and_post(request))
        for callback in callbacks:
            self._deliver(*callback)
        kinds = collections.Counter(data_type for data_type, _data in callbacks)
        return json_response({"generated": kinds[VOUCHER_GENERATED], "posted": kinds[VOUCHER_CHANGED]})

    def _admin_ledger(self, req: Request) -> Response:
        refno = req.query.get("org_refno")
        with self.lock:
            return json_response(self.journal.report(refno))

    def _admin_set_costs(self, req: Request) -> Response:
        body = self._body(req) or {}
        costs = body.get("costs")
        if not isinstance(costs, Mapping):
            return json_response({"error": "costs must be an object {inventory_item_code: cost}"}, 400)
        with self.lock:
            for code, cost in costs.items():
                try:
                    self.costs[str(code)] = to_decimal(cost)
                except ValueError:
                    return json_response({"error": f"costs.{code}: {cost!r} is not a number"}, 400)
            return json_response({"costs": {k: ledger.text(v) for k, v in sorted(self.costs.items())}})

    def _admin_set_chart(self, req: Request) -> Response:
        """Replace the chart of accounts and/or the bank accounts (each list given replaces
        its table; entries as get_dictionary data_type 5 and 8 serve them)."""
        body = self._body(req) or {}
        keys = {"accounts": "account_number", "bank_accounts": "bank_account_number"}
        for table, key in keys.items():
            rows = body.get(table)
            if rows is not None and (not isinstance(rows, list)
                                     or not all(isinstance(r, Mapping) and r.get(key) for r in rows)):
                return json_response({"error": f"{table} must be a list of objects with {key}"}, 400)
        with self.lock:
            for table in keys:
                if body.get(table) is None:
                    continue
                for code in list(self.tables[table]):
                    self._delete_entry(table, code)
                for row in body[table]:
                    self._store(table, row)
            return json_response({t: sorted(self.tables[t]) for t in keys})

    def _admin_set_stock(self, req: Request) -> Response:
        body = self._body(req) or {}
        item, stock = body.get("inventory_item_code"), body.get("stock_code")
        with self.lock:
            if item not in self.tables["inventory_items"] or stock not in self.tables["stocks"]:
                return json_response({"error": "unknown inventory_item_code or stock_code"}, 404)
            self.balances[(item, stock)] = to_decimal(body.get("quantity") or 0)
            return json_response(self._balance_row(item, stock, self.balances[(item, stock)]))

    def _admin_stock(self, req: Request) -> Response:
        with self.lock:
            return json_response({"balances": [self._balance_row(i, s, q) for (i, s), q
                                               in sorted(self.balances.items())]})

    def _admin_expire_tokens(self, req: Request) -> Response:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0
            return json_response({"expired": len(self.tokens)})

    def _callback_public(self) -> dict[str, Any]:
        return {"url": self.callback_url, "enabled": self.callback_enabled,
                "custom_key": self.callback_key is not None, **self.callback_stats}

    def _admin_set_callback(self, req: Request) -> Response:
        body = self._body(req) or {}
        with self.lock:
            if "url" in body:
                self.callback_url = body["url"] or None
            self.callback_enabled = bool(body.get("enabled", self.callback_url is not None))
            if "key" in body:
                self.callback_key = body["key"] or None
            return json_response(self._callback_public())

    def _admin_options(self, req: Request) -> Response:
        body = self._body(req) or {}
        with self.lock:
            if "reject_duplicate_refno" in body:
                self.reject_duplicate_refno = bool(body["reject_duplicate_refno"])
            if "reject_parent_accounts" in body:
                self.reject_parent_accounts = bool(body["reject_parent_accounts"])
            if "accountant" in body:
                self.accountant = bool(body["accountant"])
            if "processing_delay_ms" in body:
                self.processing_delay_s = max(0.0, float(body["processing_delay_ms"]) / 1000)
            return json_response({"reject_duplicate_refno": self.reject_duplicate_refno,
                                  "reject_parent_accounts": self.reject_parent_accounts,
                                  "accountant": self.accountant,
                                  "processing_delay_ms": int(self.processing_delay_s * 1000)})

    def _admin_stats(self, req: Request) -> Response:
        """Counts only (cheap with 100,000 requests, unlike GET requests): requests by status
        and voucher type, vouchers and dictionary entries received (and how many more than
        once), calls by function, calls still queued."""
        with self.lock:
            by_status = collections.Counter(r["status"] for r in self.requests.values())
            by_type = collections.Counter(str(r["voucher_type"]) for r in self.requests.values())
            functions = collections.Counter(c["function"] for c in self.calls)
            return json_response({
                "requests": len(self.requests), "by_status": dict(by_status),
                "by_voucher_type": dict(by_type),
                "vouchers_received": sum(self.received.values()),
                "vouchers_received_twice": sum(1 for n in self.received.values() if n > 1),
                "dictionary_received": sum(self.dictionary_received.values()),
                "dictionary_received_twice": sum(1 for n in self.dictionary_received.values()
                                                 if n > 1),
                "calls": dict(functions), "queued_calls": len(self._queue) + int(self._busy)})

    def _admin_drain(self, req: Request) -> Response:
        body = self._body(req) or {}
        deadline = time.monotonic() + min(float(body.get("timeout_s") or 10), 60.0)
        with self._work:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._work.wait(left)
            idle = not self._queue and not self._busy
        return json_response({"idle": idle}, 200 if idle else 504)
