"""The Haravan connector: reads customers, orders, products, locations and stock levels; writes
products (matched by SKU) and stock (set or adjust per location)."""
from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, Iterator, Mapping, Sequence

from hexaflow.connector import (
    CONFLICT, DONE, FAILED, REJECTED, Catalogue, ConfigVar, Connector, ConnectorContext,
    ConnectorError, DocumentInfo, JSONTooDeep, Page, Received, ReceivedEvent,
    ResourceInfo, WriteItem, WriteResult)
from hexaflow.http import RetriesExhausted
from hexaflow.text import canonical_code
from hexaflow.timeutil import parse_datetime

from .client import HaravanClient, HaravanHTTPError, HaravanSettings
from .normalise import normalise, normalise_timestamp, quirks
from .pagination import WalkError, iter_pages
from .webhooks import parse_webhook, verify_webhook

log = logging.getLogger("hexaflow.connectors.haravan")

# The cursor of a page that must not move a first, unsorted read forward.
EPOCH = "1970-01-01T00:00:00.000000Z"
ADJUST_BATCH = 100        # [DOC] adjustorset "best supports arrays of 100 items"
STOCK_TYPES = ("set", "adjust")
STOCK_REASONS = ("newproduct", "returned", "productionofgoods", "damaged", "shrinkage",
                 "promotion", "transfer")

_COMMON_PARAMS = {
    "ids": "comma-separated ids",
    "since_id": "only records with a larger id",
    "created_at_min": "ISO time", "created_at_max": "ISO time",
    "updated_at_min": "ISO time (set by the connector on incremental reads)",
    "updated_at_max": "ISO time",
}

CATALOGUE = Catalogue(
    resources={
        "customers": ResourceInfo(
            "customers", "Shop customers (GET /com/customers.json)", params=_COMMON_PARAMS,
            incremental=("updated_at",),
            fields=("id", "email", "phone", "first_name", "last_name", "addresses",
                    "default_address", "tags", "note", "orders_count", "total_spent", "total_paid",
                    "state", "verified_email", "accepts_marketing", "gender", "birthday",
                    "created_at", "updated_at")),
        "orders": ResourceInfo(
            "orders", "Orders in every status (GET /com/orders.json?status=any)",
            params={**_COMMON_PARAMS,
                    "financial_status": "pending|paid|partially_paid|refunded|voided|partially_refunded",
                    "fulfillment_status": "unshipped|shipped|partial",
                    "processed_at_min": "ISO time", "processed_at_max": "ISO time"},
            incremental=("updated_at",),
            fields=("id", "name", "order_number", "created_at", "updated_at", "cancelled_at",
                    "financial_status", "fulfillment_status", "cancelled_status",
                    "confirmed_status", "closed_status", "cancel_reason", "gateway",
                    "gateway_code", "source_name", "location_id", "customer", "email",
                    "line_items", "shipping_lines", "discount_codes", "total_line_items_price",
                    "subtotal_price", "total_discounts", "total_tax", "total_price",
                    "transactions", "fulfillments", "refunds", "billing_address",
                    "shipping_address", "note", "tags", "user_id")),
        "products": ResourceInfo(
            "products", "Products with their variants (GET /com/products.json)",
            params={**_COMMON_PARAMS, "vendor": "", "handle": "", "product_type": "",
                    "collection_id": "", "sku": "exact SKU (never empty)", "barcode": ""},
            incremental=("updated_at",),
            fields=("id", "title", "handle", "vendor", "product_type", "tags", "options",
                    "variants", "images", "published_at", "created_at", "updated_at")),
        "locations": ResourceInfo(
            "locations", "Warehouses and shops (GET /com/locations.json)",
            fields=("id", "name", "location_type", "is_primary", "address1", "province",
                    "district", "ward", "created_at", "updated_at")),
        "inventory_locations": ResourceInfo(
            "inventory_locations", "Stock per variant and location (GET /com/inventory_locations.json)",
            params={"location_ids": "comma-separated, at most 50",
                    "variant_ids": "comma-separated, at most 50"},
            fields=("id", "loc_id", "product_id", "variant_id", "qty_onhand", "qty_commited",
                    "qty_incoming", "qty_available", "updated_at")),
    },
    documents={
        "product": DocumentInfo(
            "product", "A Haravan product object with variants[].sku; matched by SKU: created "
            "when no product holds any of its SKUs, else updated (variants matched by SKU)",
            actions=("upsert", "create"),
            forbidden_fields={"id": "the connector finds the product by SKU",
                              "variants[].inventory_quantity":
                                  "stock is written with the inventory document"}),
        "inventory": DocumentInfo(
            "inventory", "One stock line: {location_id, sku, quantity, type: set|adjust, reason?, "
            "note?}; sent through POST /com/inventories/adjustorset.json in batches of <= 100 "
            "lines per location",
            actions=("upsert", "create")),
    },
)


# What the connector reads from its configuration (docs/connectors/haravan.md, Configuration).
CONFIG_VARS = (
    ConfigVar("HARAVAN_TOKEN", "private app token (or OAuth access token) of the shop, sent as "
              "Authorization: Bearer; Haravan admin → Apps → Private apps", required=True,
              secret=True),
    ConfigVar("HARAVAN_BASE_URL", "API host; the sandbox URL to test",
              default="https://apis.haravan.com"),
    ConfigVar("HARAVAN_WEBHOOK_SECRET", "secret of webhook signatures, for `hexaflow serve` "
              "(Settings → Notifications: webhook authentication secret)", secret=True),
    ConfigVar("HARAVAN_OVERLAP_SECONDS", "how far before the saved cursor an incremental read "
              "starts", default="300"),
    ConfigVar("HARAVAN_PAGE_SIZE", "records asked for per page", default="50"),
    ConfigVar("HARAVAN_CALLS_PER_SECOND", "client-side pacing of API calls", default="4"),
    ConfigVar("HARAVAN_TIMEOUT_SECONDS", "per-request timeout", default="30"),
    ConfigVar("HARAVAN_MAX_ATTEMPTS", "attempts per request for 429 / 5xx / network errors",
              default="6"),
    ConfigVar("HARAVAN_RETRY_BASE_DELAY", "first backoff wait in seconds (doubles per retry)",
              default="0.25"),
)


# Webhook topic prefix → the resource whose record changed. A refund changes its order.
TOPIC_RESOURCES = {"orders": "orders", "refunds": "orders", "customers": "customers",
                   "products": "products"}


def _result(item: WriteItem, status: str, target_ref: Any = None, code: Any = None,
            message: str | None = None) -> WriteResult:
    return WriteResult(ref=item.ref, status=status,
                       target_ref=None if target_ref is None else str(target_ref),
                       code=None if code is None else str(code), message=message)


def _canonical_sku(variant: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a payload variant whose SKU is the canonical code (hexaflow.text): the SKU the
    product is stored with is then the one later writes look it up by."""
    out = dict(variant)
    if out.get("sku") is not None:
        out["sku"] = canonical_code(str(out["sku"]))
    return out


def _chunks(seq: Sequence[Any], size: int) -> Iterator[list[Any]]:
    it = iter(seq)
    while chunk := list(islice(it, size)):
        yield chunk


class HaravanConnector(Connector):
    name = "haravan"
    catalogue = CATALOGUE
    config_vars = CONFIG_VARS

    def __init__(self, context: ConnectorContext | None = None):
        super().__init__(context or ConnectorContext())
        self.settings = HaravanSettings.from_config(self.context.config)
        self.client = HaravanClient(self.settings)
        self._sku_cache: dict[str, list[dict[str, Any]]] = {}

    # -- reading ----------------------------------------------------------------------
    def read(self, resource: str, params: Mapping[str, Any] | None = None,
             since: Any = None, *, cursor_field: str | None = None) -> Iterator[Page]:
        spec = quirks()["resources"].get(resource)
        if spec is None:
            raise ValueError(f"haravan has no resource {resource!r}; "
                             f"known: {sorted(quirks()['resources'])}")
        if cursor_field not in (None, "updated_at"):
            raise ValueError(f"haravan reads {resource} incrementally by updated_at only, "
                             f"not by {cursor_field!r}")
        query: dict[str, Any] = {k: v for k, v in (params or {}).items() if v is not None}
        query.update(spec.get("fixed_params") or {})
        if query.get("fields"):
            # Paging and cursors need these whatever the flow asked for.
            wanted = [f.strip() for f in str(query["fields"]).split(",") if f.strip()]
            query["fields"] = ",".join(dict.fromkeys(["id", "updated_at", *wanted]))
        scope = spec["scope"]

        def fetch(q: Mapping[str, Any]) -> list[dict[str, Any]]:
            try:
                body = self.client.get(spec["path"], scope=scope, params=q)
            except RetriesExhausted as exc:
                raise ConnectorError(f"{exc}; check HARAVAN_BASE_URL ({self.settings.base_url}) "
                                     "or run again later") from exc
            except HaravanHTTPError as exc:
                raise ConnectorError(f"haravan: GET {spec['path']} answered {exc}; check "
                                     f"HARAVAN_BASE_URL ({self.settings.base_url})") from exc
            return list((body or {}).get(spec["envelope"]) or [])

        if not spec.get("paginated", True):
            yield Page([normalise(r) for r in fetch(query)])
            return

        since_text = None
        if since is not None and spec.get("incremental"):
            since_dt = parse_datetime(since)
            since_text = normalise_timestamp(since_dt.isoformat())
            window_start = since_dt - timedelta(seconds=self.settings.overlap_seconds)
            query["updated_at_min"] = normalise_timestamp(window_start.isoformat())
        walk = "updated_at" if spec.get("incremental") and spec.get("sorted_by_updated_at") else None
        if walk:
            query["order"] = "updated_at asc"
        limit = int(spec.get("page_size") or self.settings.page_size)

        pages = iter_pages(fetch, query, limit, walk_field=walk)
        try:
            yield from self._pages(pages, since_text, walk, bool(spec.get("incremental")))
        except WalkError as exc:
            raise ConnectorError(self._walk_message(resource, spec["path"], exc)) from None

    def _pages(self, pages: Iterator[list[dict[str, Any]]], since_text: str | None,
               walk: str | None, incremental: bool) -> Iterator[Page]:
        """Normalised pages with the cursor each may save (see read)."""
        newest = since_text
        held: list[dict[str, Any]] | None = None    # unsorted reads: one page held back
        for raw in pages:
            records = [normalise(r) for r in raw]
            if since_text is not None and self.settings.overlap_seconds == 0:
                # Without an overlap the read is exclusive of the cursor: a record stamped
                # exactly at the cursor is the one that set it.
                records = [r for r in records if (r.get("updated_at") or "") > since_text]
            if not records:
                continue
            page_newest = max(r.get("updated_at") or "" for r in records) or None
            if walk:
                yield Page(records, cursor=page_newest)
                continue
            # Unsorted lists: nothing after a page is known to be newer than anything before
            # it, so the cursor stays put until the last page, which carries the newest stamp.
            if page_newest and (newest is None or page_newest > newest):
                newest = page_newest
            if held is not None:
                yield Page(held, cursor=since_text or EPOCH)
            held = records
        if held is not None:
            yield Page(held, cursor=newest if incremental else None)

    def _walk_message(self, resource: str, path: str, exc: WalkError) -> str:
        """What the server did, why the read stopped, and what to check."""
        check = (f"check that HARAVAN_BASE_URL ({self.settings.base_url}) is Haravan's API and "
                 "that nothing in between (a proxy, a mock) drops query parameters")
        if exc.param == "order":
            check += (f"; if this server never sorts {resource}, set `sorted_by_updated_at: "
                      f"false` for {resource} in connectors/haravan/quirks.yaml")
        return (f"haravan: GET {path}: {exc}. Reading on would serve the same {resource} again "
                f"and again, so the read stopped before that page (nothing of it was used); "
                f"{check}")

    def read_one(self, resource: str, record_id: str,
                 params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """One record by id (GET /com/<resource>/<id>.json), normalised as read() yields it;
        None when Haravan answers 404."""
        spec = quirks()["resources"].get(resource)
        if spec is None or not spec.get("one"):
            known = sorted(r for r, s in quirks()["resources"].items() if s.get("one"))
            raise ConnectorError(f"haravan cannot fetch one {resource!r} by id; "
                                 f"it can for: {', '.join(known)}")
        text = str(record_id).strip()
        if not (text.isascii() and text.isdigit()):      # "²" is a digit to str.isdigit
            raise ConnectorError(f"haravan ids are numbers, got {record_id!r}")
        path = spec["one"]["path"].replace("{id}", text)
        try:
            status, body = self.client.request("GET", path, scope=spec["scope"])
        except RetriesExhausted as exc:
            raise ConnectorError(f"{exc}; check HARAVAN_BASE_URL ({self.settings.base_url}) "
                                 "or try again later") from exc
        if status == 404:
            return None
        if status >= 400:
            raise ConnectorError(f"haravan: GET {path} answered HTTP {status}: {body}")
        record = (body or {}).get(spec["one"]["envelope"])
        return normalise(record) if isinstance(record, dict) else None

    # -- webhooks ---------------------------------------------------------------------
    def receive(self, raw_body: bytes, headers: Mapping[str, str]) -> Received:
        """A webhook delivery: verified with HARAVAN_WEBHOOK_SECRET over the raw bytes, then
        reduced to "this record changed" (the run re-reads it from the API, as Haravan
        advises: delivery order and retries are undocumented)."""
        if not verify_webhook(raw_body, headers, self.settings.webhook_secret or ""):
            return Received(401, {"error": "webhook signature missing or invalid "
                                           "(check HARAVAN_WEBHOOK_SECRET)"})
        try:
            topic, _org, body = parse_webhook(raw_body, headers)
        except JSONTooDeep as exc:
            return Received(400, {"error": f"webhook body refused: {exc} (a Haravan webhook "
                                           f"nests a few levels)"})
        except ValueError:
            return Received(400, {"error": "webhook body is not JSON"})
        resource = TOPIC_RESOURCES.get(topic.split("/", 1)[0])
        if resource is None or not isinstance(body, Mapping):
            return Received(200, {"ok": True, "ignored": topic or "no topic"})
        # Haravan's refund body is the refund (order_id); the sandbox sends the order itself.
        record_id = body.get("order_id") if topic.startswith("refunds/") else None
        record_id = record_id or body.get("id")
        if record_id is None:
            return Received(200, {"ok": True, "ignored": f"{topic} without an id"})
        version = body.get("updated_at") or body.get("created_at")
        return Received(200, {"ok": True}, events=[ReceivedEvent(
            resource, str(record_id), None if version is None else str(version))])

    # -- writing ----------------------------------------------------------------------
    def write(self, items: Sequence[WriteItem]) -> list[WriteResult]:
        results: list[WriteResult] = []
        stock: list[WriteItem] = []
        for item in items:
            if item.document == "product":
                results.append(self._write_product(item))
            elif item.document == "inventory":
                stock.append(item)
            else:
                results.append(_result(item, REJECTED, message=(
                    f"haravan cannot write document {item.document!r}; "
                    f"known: {sorted(CATALOGUE.documents)}")))
        results.extend(self._write_inventory(stock))
        return results

    def exists(self, document: str, key: str) -> bool | None:
        sku = canonical_code(str(key or ""))
        if document != "product" or not sku:
            return None
        try:
            return bool(self._products_with_sku(sku, refresh=True))
        except (RetriesExhausted, HaravanHTTPError):
            return None

    def _products_with_sku(self, sku: str, refresh: bool = False) -> list[dict[str, Any]]:
        """Products holding a variant with exactly this SKU (a canonical code: read SKUs are
        canonical too). Never asks with an empty SKU: the real API then answers with 50
        arbitrary products ([EMP])."""
        if not sku:
            return []
        if refresh or sku not in self._sku_cache:
            body = self.client.get("/products.json", scope=quirks()["resources"]["products"]["scope"],
                                   params={"sku": sku})
            products = [normalise(p) for p in (body or {}).get("products") or []]
            # Filter again here: a filter the server ignored must not match everything.
            self._sku_cache[sku] = [p for p in products
                                    if any(v.get("sku") == sku for v in p.get("variants") or [])]
        return self._sku_cache[sku]

    def _write_product(self, item: WriteItem) -> WriteResult:
        if item.action not in ("upsert", "create"):
            return _result(item, REJECTED, message=f"product supports upsert and create, not {item.action!r}")
        payload = dict(item.payload.get("product", item.payload))
        payload.pop("id", None)
        variants = [_canonical_sku(v) for v in payload.get("variants") or []]
        skus = [v["sku"] for v in variants if v.get("sku")]
        if not skus:
            return _result(item, REJECTED, message="product has no variant with a SKU; products "
                                                   "are matched by variants[].sku")
        scope = quirks()["write_scopes"]["product"]
        try:
            matches: dict[int, dict[str, Any]] = {}
            for sku in dict.fromkeys(skus):
                for product in self._products_with_sku(sku, refresh=True):
                    matches[product["id"]] = product
                if matches:
                    break
            if len(matches) > 1:
                return _result(item, REJECTED, message=(
                    f"SKUs {skus} belong to several Haravan products {sorted(matches)}; "
                    "merge them in Haravan first"))
            if not matches:
                payload["variants"] = variants
                status, body = self.client.request("POST", "/products.json", scope=scope,
                                                   body={"product": payload}, idempotent=False)
                if status >= 500:
                    # The product may have been created before the failure: look before
                    # reporting, so a later retry updates it instead of creating a twin.
                    created_anyway = self._products_with_sku(skus[0], refresh=True)
                    if len(created_anyway) == 1:
                        return _result(item, DONE, target_ref=created_anyway[0]["id"])
                if status >= 400:
                    return self._rejected(item, status, body)
                created = (body or {}).get("product") or {}
                self._remember(created)
                return _result(item, DONE, target_ref=created.get("id"))
            (product_id, existing), = matches.items()
            if item.action == "create":
                return _result(item, DONE, target_ref=product_id,
                               message="already exists (matched by SKU); not updated")
            if len(existing.get("variants") or []) > 1:
                # The item is one variant of a product with several (sizes, colours): it may
                # update its own variant, not the name and options the others share.
                payload = {}
                for variant in variants:
                    for option in ("option1", "option2", "option3"):
                        variant.pop(option, None)
            by_sku = {v.get("sku"): v.get("id") for v in existing.get("variants") or [] if v.get("sku")}
            for variant in variants:
                if variant.get("sku") in by_sku:
                    variant["id"] = by_sku[variant["sku"]]
            # Whether a PUT with variants drops the ones it leaves out is undocumented ([INF]
            # Shopify: it does); naming every existing variant keeps them either way.
            named = {v.get("id") for v in variants}
            variants += [{"id": v["id"]} for v in existing.get("variants") or [] if v["id"] not in named]
            payload["variants"] = variants
            payload["id"] = product_id
            status, body = self.client.request("PUT", f"/products/{product_id}.json", scope=scope,
                                               body={"product": payload})
            if status >= 400:
                return self._rejected(item, status, body)
            self._remember((body or {}).get("product") or {})
            return _result(item, DONE, target_ref=product_id)
        except (RetriesExhausted, HaravanHTTPError) as exc:
            return _result(item, FAILED, message=str(exc))

    def _remember(self, product: Mapping[str, Any]) -> None:
        product = normalise(product)
        for variant in product.get("variants") or []:
            if variant.get("sku"):
                self._sku_cache[variant["sku"]] = [dict(product)]

    @staticmethod
    def _rejected(item: WriteItem, status: int, message: Any) -> WriteResult:
        # 404/409 mean the target changed under us; other 4xx mean the payload is wrong.
        kind = FAILED if status >= 500 else (CONFLICT if status == 409 else REJECTED)
        return _result(item, kind, code=status, message=str(message))

    def _write_inventory(self, items: Sequence[WriteItem]) -> list[WriteResult]:
        results: list[WriteResult] = []
        groups: dict[tuple[Any, ...], list[tuple[WriteItem, dict[str, Any]]]] = {}
        for item in items:
            line, error = self._stock_line(item)
            if error:
                results.append(_result(item, REJECTED, message=error))
                continue
            key = (line["location_id"], line["type"], line["reason"], line["note"])
            groups.setdefault(key, []).append((item, line))
        for (location_id, kind, reason, note), lines in groups.items():
            for chunk in _chunks(lines, ADJUST_BATCH):
                results.extend(self._send_stock(location_id, kind, reason, note, chunk))
        return results

    def _stock_line(self, item: WriteItem) -> tuple[dict[str, Any], str | None]:
        p = item.payload
        sku = canonical_code(str(p.get("sku") or ""))
        kind = str(p.get("type") or "set").lower()
        if not sku:
            return {}, "stock line has no sku"
        if kind not in STOCK_TYPES:
            return {}, f"stock type must be one of {STOCK_TYPES}, got {p.get('type')!r}"
        try:
            location_id = int(p["location_id"])
            quantity = Decimal(str(p["quantity"]))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return {}, "stock line needs an integer location_id and a numeric quantity"
        if quantity != quantity.to_integral_value():
            return {}, f"Haravan stock quantities are whole numbers, got {quantity}"
        reason = str(p.get("reason") or "newproduct")
        if reason not in STOCK_REASONS:
            return {}, f"stock reason must be one of {STOCK_REASONS}, got {reason!r}"
        try:
            products = self._products_with_sku(sku)
        except (RetriesExhausted, HaravanHTTPError) as exc:
            return {}, f"could not look up SKU {sku}: {exc}"
        variants = [(prod["id"], v["id"]) for prod in products
                    for v in prod.get("variants") or [] if v.get("sku") == sku]
        if not variants:
            return {}, f"SKU {sku} is not in Haravan; push the product first"
        if len(variants) > 1:
            return {}, f"SKU {sku} is held by several variants {[v for _, v in variants]}"
        product_id, variant_id = variants[0]
        return {"location_id": location_id, "type": kind, "reason": reason,
                "note": p.get("note"), "product_id": product_id, "variant_id": variant_id,
                "quantity": int(quantity)}, None

    def _send_stock(self, location_id: int, kind: str, reason: str, note: Any,
                    chunk: list[tuple[WriteItem, dict[str, Any]]]) -> list[WriteResult]:
        body = {"inventory": {
            "location_id": location_id, "type": kind, "reason": reason,
            **({"note": note} if note else {}),
            "line_items": [{"product_id": line["product_id"],
                            "product_variant_id": line["variant_id"],
                            "quantity": line["quantity"]} for _, line in chunk]}}
        try:
            # An adjustment re-sent after a lost answer would count twice; a set would not.
            status, answer = self.client.request("POST", "/inventories/adjustorset.json",
                                                 scope=quirks()["write_scopes"]["inventory"], body=body,
                                                 idempotent=kind == "set")
        except (RetriesExhausted, HaravanHTTPError) as exc:
            return [_result(item, FAILED, message=str(exc)) for item, _ in chunk]
        if status < 400:
            return [_result(item, DONE, target_ref=line["variant_id"]) for item, line in chunk]
        if status >= 500 and kind == "adjust":
            message = (f"HTTP {status}: {answer}; the adjustment may have been applied, check "
                       "inventory_locations before sending it again (type set is safe to re-send)")
            return [_result(item, FAILED, code=status, message=message) for item, _ in chunk]
        if len(chunk) > 1 and status < 500:
            # One bad line fails the whole call; send lines one by one to tell which.
            out: list[WriteResult] = []
            for pair in chunk:
                out.extend(self._send_stock(location_id, kind, reason, note, [pair]))
            return out
        return [self._rejected(item, status, answer) for item, _ in chunk]

    def close(self) -> None:
        self.client.close()
