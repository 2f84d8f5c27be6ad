"""A local Haravan: the real ``/com/...json`` routes, wrappers, status codes, page cap, enum
spellings, bearer auth and the 80-call / 4-per-second leaky bucket, over real HTTP.

Admin routes (no token needed; contract in design.md):
``POST /_sandbox/reset`` (``{"data": "demo", "orders": N}`` loads the demo), ``GET /_sandbox/state``,
``POST /_sandbox/orders`` (``{"orders": [...]}`` stored as they are, for tests of hostile data),
``POST /_sandbox/orders/{id}/pay`` (``{"gateway", "amount"}``), ``POST /_sandbox/orders/{id}/fulfill``
(the body of ``fulfillments.json`` unwrapped: ``line_items``, ``location_id``, tracking, ``cod_amount``),
``POST /_sandbox/orders/{id}/fulfillments/{fid}/carrier`` (``{"status", "cod"}``: carrier and COD
status codes; COD collected records a capture), ``POST /_sandbox/faults`` (shared fault injection, plus
``{"rate_limit": true|false}`` and ``{"ignore_params": ["updated_at_min", "order", ...]}``: the
API routes then act as if those query parameters were not sent, as real Haravan does with
parameters it does not know; a faults body without it, or ``[]``, honours them all again),
``POST /_sandbox/webhooks`` (``{"url", "topics"}``),
``GET /_sandbox/webhooks`` (registrations and deliveries), ``POST /_sandbox/state``
(``{"bucket_level": N, "rate_limit": bool, "reset_counters": true}``: what another client left
in the bucket, for benchmarks), ``GET /_sandbox/stats`` (counters, orders and products
held, API calls by route, cheap at any size, unlike ``GET /_sandbox/state``) and
``GET /_sandbox/calls`` (the last API calls with when each arrived and its status: what tests
of clients sharing one bucket count).

Choices where the reference is silent are constructor options: ``default_status`` (orders.json
without ``status``; Shopify's ``open`` by default), ``set_target`` (what adjustorset ``set``
overwrites: ``onhand`` by default, or ``available``), ``scopes`` (the token's scopes, all by
default, to exercise 403s), ``bucket_size``/``leak_rate`` (80 and 4/s like the real shop).
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from typing import Any, Callable, Iterable

from hexaflow.connectors.sandbox_server import Request, Response, SandboxApp, dumps, json_response
from hexaflow.timeutil import parse_datetime

from .demo_data import SHOP_ORG_ID
from .sandbox_store import ApiError, HaravanShop, to_ms
from .webhooks import sign

log = logging.getLogger("hexaflow.sandbox.haravan")

PAGE_CAP = 50                 # [DOC] orders; [EMP] products: larger limits are capped silently
INVENTORY_PAGE_CAP = 250      # [DOC] inventory_locations
ALL_SCOPES = ("com.read_orders", "com.write_orders", "com.read_customers", "com.write_customers",
              "com.read_products", "com.write_products", "com.read_inventories",
              "com.write_inventories", "com.read_shop")
ID = r"(?P<id>\d+)"


class LeakyBucket:
    """Haravan's call limit as the server keeps it: pass/fail, no queueing ([DOC])."""

    def __init__(self, capacity: int, leak_rate: float):
        self.capacity = capacity
        self.leak_rate = leak_rate
        self.level = 0.0
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def set_level(self, level: float) -> None:
        """Start from ``level`` calls now (what other clients left in the bucket)."""
        with self.lock:
            self.level = max(0.0, min(float(level), float(self.capacity)))
            self.stamp = time.monotonic()

    def current(self) -> float:
        with self.lock:
            return max(0.0, self.level - (time.monotonic() - self.stamp) * self.leak_rate)

    def take(self) -> tuple[bool, int, float]:
        """(allowed, calls in the bucket now, seconds until one more call fits)."""
        with self.lock:
            now = time.monotonic()
            self.level = max(0.0, self.level - (now - self.stamp) * self.leak_rate)
            self.stamp = now
            if self.level + 1 > self.capacity:
                return False, self.capacity, (self.level + 1 - self.capacity) / self.leak_rate
            self.level += 1
            return True, math.ceil(self.level), 0.0


class WebhookSender:
    """Delivers signed webhooks on a background thread, like Haravan: POST, bare resource body,
    topic / org / HMAC headers; a failed delivery is re-sent a few times."""

    def __init__(self, secret: str, org_id: int, attempts: int = 3):
        self.secret = secret
        self.org_id = org_id
        self.attempts = attempts
        self.registrations: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="haravan-webhooks", daemon=True)
        self._thread.start()

    def register(self, url: str, topics: Iterable[str]) -> dict[str, Any]:
        with self._lock:
            reg = {"id": len(self.registrations) + 1, "url": url, "topics": list(topics)}
            self.registrations.append(reg)
            return reg

    def emit(self, topic: str, body: dict[str, Any]) -> None:
        with self._lock:
            targets = [r["url"] for r in self.registrations
                       if not r["topics"] or topic in r["topics"] or "*" in r["topics"]]
        if not targets:
            return
        raw = dumps(body).encode("utf-8")    # serialised now: later changes must not leak in
        for url in targets:
            self._queue.put((url, topic, raw))

    def _run(self) -> None:
        while True:
            url, topic, raw = self._queue.get()
            headers = {"Content-Type": "application/json; charset=utf-8",
                       "X-Haravan-Topic": topic, "X-Haravan-Org-Id": str(self.org_id),
                       "X-Haravan-Hmacsha256": sign(raw, self.secret)}
            status: Any = None
            for attempt in range(self.attempts):
                try:
                    req = urllib.request.Request(url, data=raw, headers=headers, method="POST")
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        status = resp.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                except Exception as exc:   # receiver down: note it, try again
                    status = type(exc).__name__
                if status == 200:
                    break
                time.sleep(0.2 * (attempt + 1))
            with self._lock:
                self.deliveries.append({"url": url, "topic": topic, "status": status})


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be an integer") from None


def _path_id(req: Request) -> int:
    return _int(req.params["id"], "id")


def _opt_int(req: Request, name: str) -> int | None:
    return _int(req.query[name], name) if req.query.get(name) else None


def _time_param(req: Request, name: str) -> int | None:
    value = req.query.get(name)
    if not value:
        return None
    try:
        return int(parse_datetime(value).timestamp() * 1000)
    except ValueError:
        raise ApiError(400, f"{name} is not a valid date: {value}") from None


def _ids(req: Request, name: str = "ids") -> set[int] | None:
    value = req.query.get(name)
    if not value:
        return None
    return {_int(v, name) for v in value.split(",") if v.strip()}


def _paging(req: Request, cap: int = PAGE_CAP) -> tuple[int, int]:
    limit = _int(req.query.get("limit") or cap, "limit")
    page = _int(req.query.get("page") or 1, "page")
    return max(1, min(limit, cap)), max(1, page)


def _fields(req: Request, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fields = [f.strip() for f in (req.query.get("fields") or "").split(",") if f.strip()]
    if not fields:
        return records
    return [{k: r.get(k) for k in fields if k in r} for r in records]


class HaravanSandbox(SandboxApp):
    name = "haravan"

    def __init__(self, token: str, webhook_secret: str, data: str = "demo", orders: int = 200,
                 rate_limit: bool = True, seed: int = 1, *, bucket_size: int = 80,
                 leak_rate: float = 4.0, scopes: Iterable[str] | None = None,
                 default_status: str = "open", set_target: str = "onhand",
                 org_id: int = SHOP_ORG_ID):
        super().__init__()
        self.token = token
        self.rate_limit = rate_limit
        self.bucket = LeakyBucket(bucket_size, leak_rate)
        self.scopes = set(ALL_SCOPES if scopes is None else scopes)
        self.default_status = default_status
        self.demo_orders = orders
        self.webhooks = WebhookSender(webhook_secret, org_id)
        self.shop = HaravanShop(seed=seed, on_event=self.webhooks.emit, set_target=set_target)
        self.shop.reset(data, orders)
        self.calls = 0                 # API calls answered, for tests and benchmarks
        # The last API requests (method, path, query), so tests can see what a client sent.
        self.requests: deque[tuple[str, str, dict[str, str]]] = deque(maxlen=20_000)
        # Every API request by "METHOD path" since start (or reset_counters), without limit.
        self.request_counts: Counter[str] = Counter()
        self.first_request_at = self.last_request_at = 0.0    # epoch seconds, API requests
        self.throttled = 0             # 429s answered by the bucket
        # The last API calls: (arrival, epoch seconds; method; path; status, None if dropped).
        self.call_log: deque[tuple[float, str, str, int | None]] = deque(maxlen=20_000)
        self.ignored_params: frozenset[str] = frozenset()   # POST /_sandbox/faults ignore_params
        self._routes_api()
        self._routes_admin()

    # -- plumbing ---------------------------------------------------------------------
    def on_faults(self, body: dict[str, Any]) -> None:
        if "rate_limit" in body:
            self.rate_limit = bool(body["rate_limit"])
        names = body.get("ignore_params") or []
        names = names if isinstance(names, list) else [names]
        self.ignored_params = frozenset(str(n) for n in names)

    def api(self, method: str, path: str, scope: str, handler: Callable[[Request], Response]) -> None:
        def run(req: Request) -> Response:
            if scope not in self.scopes and scope.replace("read_", "write_") not in self.scopes:
                return json_response({"errors": f"[API] This action requires merchant approval "
                                                f"for {scope} scope."}, 403)
            try:
                with self.lock:
                    return handler(req)
            except ApiError as exc:
                return json_response({"errors": exc.errors}, exc.status)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # Mostly malformed input; logged in case it is a sandbox bug instead.
                log.debug("haravan sandbox: %s %s -> 400", req.method, req.path, exc_info=True)
                return json_response({"errors": f"Bad Request: {exc}"}, 400)
        self.add(method, "/com" + path, run)

    def dispatch(self, req: Request) -> Response:
        if req.path.startswith("/_sandbox/"):
            return super().dispatch(req)
        arrived, status = time.time(), None
        try:
            resp = self._answer(req)
            status = resp.status
            return resp
        finally:
            with self.lock:
                self.call_log.append((arrived, req.method, req.path, status))

    def _answer(self, req: Request) -> Response:
        self.requests.append((req.method, req.path, dict(req.query)))     # as the client sent it
        for name in self.ignored_params & req.query.keys():
            del req.query[name]
            req.query_lists.pop(name, None)
        with self.lock:
            self.request_counts[f"{req.method} {req.path}"] += 1
            self.last_request_at = time.time()
            self.first_request_at = self.first_request_at or self.last_request_at
        auth = req.header("authorization") or ""
        if not auth.startswith("Bearer ") or auth[len("Bearer "):].strip() != self.token:
            resp = json_response({"errors": "[API] Invalid API key or access token "
                                            "(unrecognized login or wrong password)"}, 401)
            return resp
        if self.rate_limit:
            allowed, used, wait = self.bucket.take()
            if not allowed:
                with self.lock:
                    self.throttled += 1
                return json_response({"errors": "Exceeded 80 calls per second for api client. "
                                                "Reduce request rates to resume uninterrupted service."},
                                     429, **{"Retry-After": f"{max(wait, 0.1):.1f}",
                                             "X-Haravan-Api-Call-Limit": f"{used}/{self.bucket.capacity}"})
        else:
            used = 1
        with self.lock:
            self.calls += 1
        if req.method in ("POST", "PUT") and req.body:
            try:
                req.json()
            except ValueError:
                return json_response({"errors": "Bad Request: body is not JSON"}, 400)
        resp = super().dispatch(req)
        resp.headers.setdefault("X-Haravan-Api-Call-Limit", f"{used}/{self.bucket.capacity}")
        return resp

    @staticmethod
    def _body(req: Request, wrapper: str | None = None) -> dict[str, Any]:
        body = req.json() or {}
        if wrapper is not None:
            if not isinstance(body, dict) or not isinstance(body.get(wrapper), dict):
                raise ApiError(400, f'body must be {{"{wrapper}": {{...}}}}')
            return body[wrapper]
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    # -- real routes ------------------------------------------------------------------
    def _routes_api(self) -> None:
        a = self.api
        a("GET", r"/shop\.json", "com.read_shop", lambda r: json_response({"shop": {
            "id": SHOP_ORG_ID, "name": "Hexa Demo Shop", "currency": "VND",
            "timezone": "(GMT+07:00) Hanoi", "money_format": "{{amount}}₫",
            "myharavan_domain": "hexa-demo.myharavan.com", "inventory_method": "fifo"}}))
        # customers
        a("GET", r"/customers\.json", "com.read_customers", self.list_customers)
        a("GET", r"/customers/count\.json", "com.read_customers",
          lambda r: json_response({"count": len(
              self._filter_simple(r, self.shop.customers.values()))}))
        a("GET", r"/customers/search\.json", "com.read_customers", self.search_customers)
        a("GET", rf"/customers/{ID}\.json", "com.read_customers",
          lambda r: json_response({"customer": self._get(self.shop.customers, r)}))
        a("POST", r"/customers\.json", "com.write_customers",
          lambda r: json_response({"customer": self.shop.create_customer(self._body(r, "customer"))}, 201))
        a("PUT", rf"/customers/{ID}\.json", "com.write_customers",
          lambda r: json_response({"customer": self.shop.update_customer(
              _path_id(r), self._body(r, "customer"))}))
        # orders
        a("GET", r"/orders\.json", "com.read_orders", self.list_orders)
        a("GET", r"/orders/count\.json", "com.read_orders", self.count_orders)
        a("GET", rf"/orders/{ID}\.json", "com.read_orders",
          lambda r: json_response({"order": _fields(r, [self.shop.get_order(_path_id(r))])[0]}))
        a("POST", r"/orders\.json", "com.write_orders",
          lambda r: json_response({"order": self.shop.create_order(self._body(r, "order"))}, 201))
        a("PUT", rf"/orders/{ID}\.json", "com.write_orders",
          lambda r: json_response({"order": self.shop.update_order(
              _path_id(r), self._body(r, "order"))}))
        a("POST", rf"/orders/{ID}/cancel\.json", "com.write_orders",
          lambda r: json_response({"order": self.shop.cancel_order(_path_id(r), self._body(r))}))
        a("GET", rf"/orders/{ID}/fulfillments\.json", "com.read_orders",
          lambda r: json_response({"fulfillments": self.shop.get_order(_path_id(r))["fulfillments"]}))
        a("GET", rf"/orders/{ID}/fulfillments/(?P<fid>\d+)\.json", "com.read_orders",
          lambda r: json_response({"fulfillment": self.shop.get_fulfillment(
              _path_id(r), _int(r.params["fid"], "fulfillment id"))}))
        a("POST", rf"/orders/{ID}/fulfillments\.json", "com.write_orders",
          lambda r: json_response({"fulfillment": self.shop.create_fulfillment(
              _path_id(r), self._body(r, "fulfillment"))}, 201))
        a("GET", rf"/orders/{ID}/refunds\.json", "com.read_orders",
          lambda r: json_response({"refunds": self.shop.get_order(_path_id(r))["refunds"]}))
        a("GET", rf"/orders/{ID}/refunds/(?P<rid>\d+)\.json", "com.read_orders", self.get_refund)
        a("POST", rf"/orders/{ID}/refunds\.json", "com.write_orders",
          lambda r: json_response({"refund": self.shop.create_refund(
              _path_id(r), self._body(r, "refund"))}, 201))
        a("GET", rf"/orders/{ID}/transactions\.json", "com.read_orders",
          lambda r: json_response({"transactions": [
              self._tx_out(t) for t in self.shop.get_order(_path_id(r))["transactions"]]}))
        a("GET", rf"/orders/{ID}/transactions/(?P<tid>\d+)\.json", "com.read_orders", self.get_transaction)
        a("POST", rf"/orders/{ID}/transactions\.json", "com.write_orders",
          lambda r: json_response({"transaction": self._tx_out(self.shop.add_transaction(
              _path_id(r), self._body(r, "transaction")))}, 201))
        # products and variants
        a("GET", r"/products\.json", "com.read_products", self.list_products)
        a("GET", r"/products/count\.json", "com.read_products",
          lambda r: json_response({"count": len(self._product_matches(r))}))
        a("GET", rf"/products/{ID}\.json", "com.read_products",
          lambda r: json_response({"product": self.shop.product_json(self._get(self.shop.products, r))}))
        a("POST", r"/products\.json", "com.write_products",
          lambda r: json_response({"product": self.shop.product_json(
              self.shop.create_product(self._body(r, "product")))}, 201))
        a("PUT", rf"/products/{ID}\.json", "com.write_products",
          lambda r: json_response({"product": self.shop.product_json(self.shop.update_product(
              _path_id(r), self._body(r, "product")))}))
        a("GET", rf"/products/{ID}/variants\.json", "com.read_products", self.list_variants)
        a("GET", rf"/products/{ID}/variants/count\.json", "com.read_products",
          lambda r: json_response({"count": len(self._get(self.shop.products, r)["variants"])}))
        a("POST", rf"/products/{ID}/variants\.json", "com.write_products",
          lambda r: json_response({"variant": self.shop.add_variant(
              _path_id(r), self._body(r, "variant"))}, 201))
        a("GET", rf"/variants/{ID}\.json", "com.read_products", self.get_variant)
        a("PUT", rf"/variants/{ID}\.json", "com.write_products",
          lambda r: json_response({"variant": self.shop.update_variant(
              _path_id(r), self._body(r, "variant"))}))
        # locations and stock
        a("GET", r"/locations\.json", "com.read_shop",
          lambda r: json_response({"locations": list(self.shop.locations.values())}))
        a("GET", rf"/locations/{ID}\.json", "com.read_shop",
          lambda r: json_response({"location": self._get(self.shop.locations, r)}))
        a("GET", r"/inventory_locations\.json", "com.read_inventories", self.list_inventory)
        a("POST", r"/inventories/adjustorset\.json", "com.write_inventories",
          lambda r: json_response({"inventory": self.shop.adjust_or_set(self._body(r, "inventory"))}, 201))
        a("GET", r"/inventories/adjustments\.json", "com.read_inventories", self.list_adjustments)
        a("GET", r"/inventories/adjustments/count\.json", "com.read_inventories",
          lambda r: json_response({"count": len(self.shop.adjustments)}))

    @staticmethod
    def _get(table: dict[int, dict[str, Any]], req: Request) -> dict[str, Any]:
        record = table.get(_path_id(req))
        if record is None:
            raise ApiError(404, "Not Found")
        return record

    @staticmethod
    def _tx_out(tx: dict[str, Any]) -> dict[str, Any]:
        # The transaction endpoint capitalises kinds ("Capture"); inside orders they are
        # lower-case ([DOC-EX]).
        return dict(tx, kind=str(tx["kind"]).capitalize())

    def _filter_simple(self, req: Request, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """ids / since_id / created_at / updated_at filters, newest id first ([EMP] products)."""
        ids = _ids(req)
        since_id = _opt_int(req, "since_id")
        bounds = [(name, _time_param(req, name)) for name in
                  ("created_at_min", "created_at_max", "updated_at_min", "updated_at_max")]
        out = []
        for record in records:
            if ids is not None and record["id"] not in ids:
                continue
            if since_id is not None and record["id"] <= since_id:
                continue
            keep = True
            for name, bound in bounds:
                if bound is None:
                    continue
                value = to_ms(record[name.rsplit("_", 1)[0]])
                if (name.endswith("_min") and value < bound) or (name.endswith("_max") and value > bound):
                    keep = False
                    break
            if keep:
                out.append(record)
        out.sort(key=lambda r: r["id"], reverse=since_id is None)
        return out

    def _page(self, req: Request, records: list[dict[str, Any]], cap: int = PAGE_CAP) -> list[dict[str, Any]]:
        limit, page = _paging(req, cap)
        return records[(page - 1) * limit: page * limit]

    def list_customers(self, req: Request) -> Response:
        records = self._page(req, self._filter_simple(req, self.shop.customers.values()))
        return json_response({"customers": _fields(req, records)})

    def search_customers(self, req: Request) -> Response:
        text = (req.query.get("query") or "").strip().lower()
        matches = [c for c in self.shop.customers.values()
                   if not text or any(text in str(c.get(k) or "").lower()
                                      for k in ("first_name", "last_name", "email", "phone", "tags"))]
        created_min = _time_param(req, "created_at_min")
        if created_min is not None:
            matches = [c for c in matches if to_ms(c["created_at"]) >= created_min]
        matches.sort(key=lambda c: c.get("last_order_date") or "", reverse=True)
        return json_response({"customers": _fields(req, self._page(req, matches))})

    def _product_matches(self, req: Request) -> list[dict[str, Any]]:
        products = self._filter_simple(req, self.shop.products.values())
        if "sku" in req.query:
            sku = req.query["sku"]
            if sku == "":
                # The real API ignores an empty sku and answers 50 arbitrary products ([EMP]).
                return products
            products = [p for p in products if any(v.get("sku") == sku for v in p["variants"])]
        for key in ("vendor", "handle", "product_type"):
            if req.query.get(key):
                products = [p for p in products if p.get(key) == req.query[key]]
        if req.query.get("barcode"):
            barcode = req.query["barcode"]
            products = [p for p in products if any(v.get("barcode") == barcode for v in p["variants"])]
        return products

    def list_products(self, req: Request) -> Response:
        records = [self.shop.product_json(p) for p in self._page(req, self._product_matches(req))]
        return json_response({"products": _fields(req, records)})

    def list_variants(self, req: Request) -> Response:
        product = self.shop.product_json(self._get(self.shop.products, req))
        variants = product["variants"]
        ids = _ids(req)
        if ids is not None:
            variants = [v for v in variants if v["id"] in ids]
        return json_response({"variants": _fields(req, self._page(req, variants))})

    def get_variant(self, req: Request) -> Response:
        vid = _path_id(req)
        pid = self.shop.variant_product.get(vid)
        if pid is None or pid not in self.shop.products:
            raise ApiError(404, "Not Found")
        product = self.shop.product_json(self.shop.products[pid])
        return json_response({"variant": next(v for v in product["variants"] if v["id"] == vid)})

    def get_refund(self, req: Request) -> Response:
        order = self.shop.get_order(_path_id(req))
        rid = _int(req.params["rid"], "refund id")
        refund = next((r for r in order["refunds"] if r["id"] == rid), None)
        if refund is None:
            raise ApiError(404, "Not Found")
        return json_response({"refund": refund})

    def get_transaction(self, req: Request) -> Response:
        order = self.shop.get_order(_path_id(req))
        tid = _int(req.params["tid"], "transaction id")
        tx = next((t for t in order["transactions"] if t["id"] == tid), None)
        if tx is None:
            raise ApiError(404, "Not Found")
        return json_response({"transaction": self._tx_out(tx)})

    def list_inventory(self, req: Request) -> Response:
        locations = _ids(req, "location_ids")
        variants = _ids(req, "variant_ids") or _ids(req, "vatiant_ids")   # the doc's typo too
        for name, ids in (("location_ids", locations), ("variant_ids", variants)):
            if ids is not None and len(ids) > 50:
                raise ApiError(422, {name: ["at most 50 ids"]})
        updated_min = _time_param(req, "updated_at_min")
        since_id = _opt_int(req, "since_id")
        levels = [lv for lv in self.shop.inventory.values()
                  if (locations is None or lv["loc_id"] in locations)
                  and (variants is None or lv["variant_id"] in variants)
                  and (updated_min is None or lv["updated_ms"] >= updated_min)
                  and (since_id is None or lv["id"] > since_id)]
        key = "updated_ms" if req.query.get("order") == "updated_at" else "id"
        levels.sort(key=lambda lv: lv[key], reverse=req.query.get("direction") == "desc")
        page = self._page(req, levels, INVENTORY_PAGE_CAP)
        return json_response({"inventory_locations": [self.shop.level_json(lv) for lv in page]})

    def list_adjustments(self, req: Request) -> Response:
        items = self.shop.adjustments
        if req.query.get("location_id"):
            items = [a for a in items if a["location_id"] == _int(req.query["location_id"], "location_id")]
        return json_response({"inventory_adjustments": self._page(req, list(reversed(items)))})

    # orders ------------------------------------------------------------------------------
    def _order_filter(self, req: Request) -> Callable[[int, tuple], bool] | None:
        status = (req.query.get("status") or self.default_status).lower()
        if status not in ("open", "closed", "cancelled", "any"):
            raise ApiError(400, "status must be open, closed, cancelled or any")
        financial = (req.query.get("financial_status") or "any").lower()
        fulfillment = (req.query.get("fulfillment_status") or "any").lower()
        ids = _ids(req)
        since_id = _opt_int(req, "since_id")
        created_min = _time_param(req, "created_at_min") or _time_param(req, "processed_at_min")
        created_max = _time_param(req, "created_at_max") or _time_param(req, "processed_at_max")
        spelled = {"partiallypaid": "partially_paid"}
        shipped = {"unshipped": ("notfulfilled", None), "shipped": ("fulfilled",), "partial": ("partial",)}
        checks: list[Callable[[int, tuple], bool]] = []
        if status == "open":
            checks.append(lambda oid, s: not s[4] and not s[5])
        elif status == "closed":
            checks.append(lambda oid, s: s[5])
        elif status == "cancelled":
            checks.append(lambda oid, s: s[4])
        if financial != "any":
            checks.append(lambda oid, s: spelled.get(s[2], s[2]) == financial)
        if fulfillment != "any":
            wanted = shipped.get(fulfillment, (fulfillment,))
            checks.append(lambda oid, s: s[3] in wanted)
        if ids is not None:
            checks.append(lambda oid, s: oid in ids)
        if since_id is not None:
            checks.append(lambda oid, s: oid > since_id)
        if created_min is not None:
            checks.append(lambda oid, s: s[0] >= created_min)
        if created_max is not None:
            checks.append(lambda oid, s: s[0] <= created_max)
        if not checks:
            return None
        return lambda oid, s: all(check(oid, s) for check in checks)

    def list_orders(self, req: Request) -> Response:
        limit, page = _paging(req)
        order = (req.query.get("order") or "id desc").strip().lower()
        if order.split(" ")[0] not in ("created_at", "updated_at", "id"):
            raise ApiError(400, "order must be created_at or updated_at, asc or desc")
        if order.split(" ")[0] == "created_at":
            order = "id " + (order.split(" ")[1] if " " in order else "desc")
        ids = self.shop.orders.query(
            order=order, updated_min=_time_param(req, "updated_at_min"),
            updated_max=_time_param(req, "updated_at_max"), keep=self._order_filter(req),
            offset=(page - 1) * limit, limit=limit)
        return json_response({"orders": _fields(req, [self.shop.get_order(oid) for oid in ids])})

    def count_orders(self, req: Request) -> Response:
        return json_response({"count": self.shop.orders.count(
            self._order_filter(req), _time_param(req, "updated_at_min"),
            _time_param(req, "updated_at_max"))})

    # -- admin routes -----------------------------------------------------------------
    def _routes_admin(self) -> None:
        self.add("POST", r"/_sandbox/reset", self.admin_reset)
        self.add("GET", r"/_sandbox/state", self.admin_state)
        self.add("POST", r"/_sandbox/state", self.admin_set_state)
        self.add("GET", r"/_sandbox/stats", self.admin_stats)
        self.add("GET", r"/_sandbox/calls", self.admin_calls)
        self.add("POST", r"/_sandbox/orders", self.admin_raw_orders)
        self.add("POST", rf"/_sandbox/orders/{ID}/pay", self.admin_pay)
        self.add("POST", rf"/_sandbox/orders/{ID}/fulfill", self.admin_fulfill)
        self.add("POST", rf"/_sandbox/orders/{ID}/fulfillments/(?P<fid>\d+)/carrier", self.admin_carrier)
        self.add("POST", r"/_sandbox/webhooks", self.admin_webhook)
        self.add("GET", r"/_sandbox/webhooks", lambda r: json_response(
            {"webhooks": self.webhooks.registrations, "deliveries": list(self.webhooks.deliveries)}))

    def _admin(self, fn: Callable[[], Any]) -> Response:
        try:
            with self.lock:
                return json_response(fn())
        except ApiError as exc:
            return json_response({"errors": exc.errors}, exc.status)

    def admin_reset(self, req: Request) -> Response:
        body = req.json() or {}
        data = body.get("data") or "empty"
        if data not in ("empty", "demo"):
            return json_response({"errors": "data must be empty or demo"}, 400)
        orders = int(body.get("orders") or self.demo_orders)

        def reset() -> dict[str, Any]:
            self.shop.reset(data, orders)
            self.bucket.level = 0.0
            return {"data": data, "orders": len(self.shop.orders)}
        return self._admin(reset)

    def admin_state(self, req: Request) -> Response:
        with self.lock:
            state = self.shop.state()
            state["rate_limit"] = self.rate_limit
        return json_response(state)

    def admin_set_state(self, req: Request) -> Response:
        """``{"bucket_level": N}`` fills the bucket as another client would have (a benchmark
        starts a run against a full bucket); ``rate_limit`` switches the bucket;
        ``reset_counters`` zeroes calls, throttled and the request log."""
        body = req.json() or {}
        if not isinstance(body, dict):
            return json_response({"errors": "body must be a JSON object"}, 400)
        if "bucket_level" in body:
            try:
                level = float(body["bucket_level"])
            except (TypeError, ValueError):
                return json_response({"errors": {"bucket_level": ["must be a number"]}}, 422)
            self.bucket.set_level(level)
        with self.lock:
            if "rate_limit" in body:
                self.rate_limit = bool(body["rate_limit"])
            if body.get("reset_counters"):
                self.calls = self.throttled = 0
                self.requests.clear()
                self.call_log.clear()
                self.request_counts.clear()
                self.first_request_at = self.last_request_at = 0.0
        return self.admin_stats(req)

    def admin_stats(self, req: Request) -> Response:
        with self.lock:
            return json_response({
                "calls": self.calls, "throttled": self.throttled, "rate_limit": self.rate_limit,
                "bucket": {"level": round(self.bucket.current(), 3),
                           "capacity": self.bucket.capacity, "leak_rate": self.bucket.leak_rate},
                "orders": len(self.shop.orders), "products": len(self.shop.products),
                "requests": dict(self.request_counts),
                "first_request_at": self.first_request_at or None,
                "last_request_at": self.last_request_at or None})

    def admin_calls(self, req: Request) -> Response:
        """The last API calls, oldest first: ``{"calls": [{"at", "method", "path", "status"}]}``
        (``at``: when it arrived, epoch seconds; ``status`` null: the connection was dropped)."""
        with self.lock:
            calls = [{"at": at, "method": method, "path": path, "status": status}
                     for at, method, path, status in self.call_log]
        return json_response({"calls": calls})

    def admin_raw_orders(self, req: Request) -> Response:
        """``{"orders": [...]}`` stored as they are (HaravanShop.store_raw_order): orders no
        API route would create, for tests of hostile data."""
        body = req.json() or {}
        orders = body.get("orders") if isinstance(body, dict) else None
        if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
            return json_response({"errors": {"orders": ["must be a list of objects"]}}, 422)
        return self._admin(lambda: {"ids": [self.shop.store_raw_order(o)["id"] for o in orders]})

    def admin_pay(self, req: Request) -> Response:
        """``{"gateway", "amount"}``, both optional: a capture of ``amount`` (default: all still
        due) on ``gateway`` (default: the order's)."""
        def pay() -> dict[str, Any]:
            body = self._admin_body(req)
            return {"order": self.shop.pay_order(int(req.params["id"]), body.get("gateway"),
                                                 body.get("amount"))}
        return self._admin(pay)

    def admin_fulfill(self, req: Request) -> Response:
        """The body of ``POST /orders/{id}/fulfillments.json`` without its wrapper (all optional:
        no ``line_items`` ships everything left)."""
        return self._admin(lambda: {"order": self.shop.fulfill_order(
            int(req.params["id"]), self._admin_body(req))})

    def admin_carrier(self, req: Request) -> Response:
        """``{"status": <carrier status code>, "cod": <COD status code>}`` (either or both)."""
        oid, fid = int(req.params["id"]), int(req.params["fid"])
        return self._admin(lambda: {"fulfillment": self.shop.move_carrier(oid, fid, self._admin_body(req)),
                                    "order": self.shop.get_order(oid)})

    @staticmethod
    def _admin_body(req: Request) -> dict[str, Any]:
        body = req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        return body

    def admin_webhook(self, req: Request) -> Response:
        body = req.json() or {}
        if not body.get("url"):
            return json_response({"errors": {"url": ["can't be blank"]}}, 422)
        topics = body.get("topics") or []
        return json_response({"webhook": self.webhooks.register(body["url"], topics)}, 201)
