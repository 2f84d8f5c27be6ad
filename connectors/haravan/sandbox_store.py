"""The Haravan sandbox's shop: the in-memory store behind the HTTP routes.

Records are kept in the API's own shape (money as JSON-style floats, timestamps as Haravan
renders them) so the routes only wrap them. Orders live in :class:`OrderIndex`, which keeps demo
orders as plans until one is changed and answers list queries from sorted indexes, so 100,000
orders cost no more per request than 100.

Every change takes a timestamp from :meth:`HaravanShop.tick`, which is strictly increasing, and
reports ``(topic, resource)`` to ``on_event`` for webhook delivery. Callers hold the app lock.
"""
from __future__ import annotations

import bisect
import copy
import time
from decimal import Decimal
from typing import Any, Callable, Iterator

from hexaflow.connectors.sandbox_world import WAREHOUSES
from hexaflow.timeutil import parse_datetime

from . import demo_data as demo
from . import sandbox_facts as facts
from .demo_data import OrderPlan, money, render_time
from .sandbox_facts import dec

class ApiError(Exception):
    """An answer other than success: the route turns it into status + {"errors": ...}."""

    def __init__(self, status: int, errors: Any):
        super().__init__(str(errors))
        self.status = status
        self.errors = errors


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def refused(field: str, message: str) -> ApiError:
    return ApiError(422, {field: [message]})


def _count(value: Any, field: str) -> int:
    """A whole, positive number of units."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise refused(field, f"{value!r} is not a whole number")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise refused(field, f"{value!r} is not a whole number") from None
    if number != number.to_integral_value() or number <= 0:
        raise refused(field, f"{value!r} must be a whole number above 0")
    return int(number)


def to_ms(value: str) -> int:
    return int(parse_datetime(value).timestamp() * 1000)


# What list filters read of an order: (created_ms, updated_ms, financial_status,
# fulfillment_status, cancelled, closed). The statuses are strings in the orders this store
# builds, but a raw order (``store_raw_order``) may hold anything there, so they are Any.
OrderSummary = tuple[int, int, Any, Any, bool, bool]


def _summary(order: dict[str, Any], updated_ms: int) -> OrderSummary:
    """What list filters read of an order. Tolerant: a raw order (``store_raw_order``) may
    hold anything in these fields."""
    try:
        created_ms = to_ms(order["created_at"])
    except (KeyError, TypeError, ValueError, OverflowError):
        created_ms = updated_ms
    return (created_ms, updated_ms, order.get("financial_status"), order.get("fulfillment_status"),
            order.get("cancelled_status") == "cancelled", order.get("closed_status") == "closed")


class OrderIndex:
    """Orders by id, with sorted (updated_at, id) and id indexes and a per-order summary used
    by filters, so a list query never builds or sorts orders it does not return."""

    def __init__(self, build: Callable[[OrderPlan], dict[str, Any]]):
        self._build = build
        self._plans: dict[int, int] = {}          # id -> demo index, until materialised
        self._orders: dict[int, dict[str, Any]] = {}
        self.summary: dict[int, OrderSummary] = {}
        self.ids: list[int] = []                  # ascending; ids grow with creation
        self.by_updated: list[tuple[int, int]] = []
        self._seed = 0
        self._count = 0

    def __len__(self) -> int:
        return len(self.ids)

    def load_plans(self, seed: int, count: int) -> Iterator[OrderPlan]:
        self._seed, self._count = seed, count
        for index in range(count):
            plan = demo.plan_order(seed, index, count)
            fin, ful, cancelled = plan.statuses
            if fin == "partially_refunded" and len(plan.lines) == 1:
                ful = "restocked"
            self._plans[plan.id] = index
            self.summary[plan.id] = (plan.created_ms, plan.updated_ms, fin, ful, cancelled, False)
            self.ids.append(plan.id)
            self.by_updated.append((plan.updated_ms, plan.id))
            yield plan
        self.ids.sort()
        self.by_updated.sort()

    def get(self, order_id: int) -> dict[str, Any] | None:
        """The order (a fresh build for a demo order nobody changed: do not mutate it)."""
        if order_id in self._orders:
            return self._orders[order_id]
        if order_id in self._plans:
            return self._build(demo.plan_order(self._seed, self._plans[order_id], self._count))
        return None

    def materialise(self, order_id: int) -> dict[str, Any]:
        order = self.get(order_id)
        if order is None:
            raise not_found()
        if order_id in self._plans:
            del self._plans[order_id]
            self._orders[order_id] = order
        return order

    def put(self, order: dict[str, Any], updated_ms: int) -> None:
        """Store a new or changed order (already materialised) and re-index it."""
        oid = order["id"]
        old = self.summary.get(oid)
        if old is None:
            self.ids.append(oid)     # new ids are larger than every id so far
        else:
            pos = bisect.bisect_left(self.by_updated, (old[1], oid))
            if pos < len(self.by_updated) and self.by_updated[pos] == (old[1], oid):
                del self.by_updated[pos]
        self._orders[oid] = order
        bisect.insort(self.by_updated, (updated_ms, oid))
        self.summary[oid] = _summary(order, updated_ms)

    def query(self, *, order: str, updated_min: int | None, updated_max: int | None,
              keep: Callable[[int, tuple], bool] | None, offset: int, limit: int) -> list[int]:
        """Ids of one page. ``order``: "updated_at asc|desc" or "id asc|desc" (ids grow with
        created_at, so they stand for it)."""
        field, _, direction = order.partition(" ")
        descending = direction.strip().lower() == "desc"
        if field == "updated_at":
            lo = bisect.bisect_left(self.by_updated, (updated_min, -1)) if updated_min is not None else 0
            hi = bisect.bisect_right(self.by_updated, (updated_max, 1 << 62)) \
                if updated_max is not None else len(self.by_updated)
            seq: Any = self.by_updated
            positions = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
            get_id = lambda p: seq[p][1]   # noqa: E731
        else:
            keep = self._within_updated(keep, updated_min, updated_max)
            seq = self.ids
            positions = range(len(seq) - 1, -1, -1) if descending else range(len(seq))
            get_id = lambda p: seq[p]   # noqa: E731
        if keep is None:
            chosen = positions[offset:offset + limit]
            return [get_id(p) for p in chosen]
        out: list[int] = []
        skipped = 0
        for p in positions:
            oid = get_id(p)
            if not keep(oid, self.summary[oid]):
                continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(oid)
            if len(out) >= limit:
                break
        return out

    @staticmethod
    def _within_updated(keep: Callable[[int, tuple], bool] | None, lo: int | None,
                        hi: int | None) -> Callable[[int, tuple], bool] | None:
        """``keep`` narrowed to an updated_at range (for scans that do not use by_updated)."""
        if lo is None and hi is None:
            return keep
        return lambda oid, s: ((lo is None or s[1] >= lo) and (hi is None or s[1] <= hi)
                               and (keep is None or keep(oid, s)))

    def count(self, keep: Callable[[int, tuple], bool] | None, updated_min: int | None = None,
              updated_max: int | None = None) -> int:
        keep = self._within_updated(keep, updated_min, updated_max)
        if keep is None:
            return len(self.ids)
        return sum(1 for oid in self.ids if keep(oid, self.summary[oid]))


class HaravanShop:
    def __init__(self, seed: int = 1, on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 set_target: str = "onhand"):
        self.seed = seed
        self.on_event = on_event or (lambda topic, body: None)
        # Which figure adjustorset type=set overwrites is unverified ([UNK]); on-hand by default.
        self.set_target = set_target
        self.reset("empty")

    # -- setup ------------------------------------------------------------------------
    def reset(self, data: str = "empty", orders: int = 200) -> None:
        self._last_ms = 0
        self._next_id = 2_000_000_000_000
        self.customers: dict[int, dict[str, Any]] = {}
        self.products: dict[int, dict[str, Any]] = {}
        self.variant_product: dict[int, int] = {}
        self.inventory: dict[tuple[int, int], dict[str, Any]] = {}
        self.adjustments: list[dict[str, Any]] = []
        self.locations = {w.location_id: self._location(w, n) for n, w in enumerate(WAREHOUSES)}
        self._demo_customers: list[dict[str, Any]] = []
        self._demo_variants: dict[str, tuple[int, int]] = {}
        self.orders = OrderIndex(self._build_demo_order)
        if data == "demo":
            self._load_demo(orders)

    def _location(self, w: Any, n: int) -> dict[str, Any]:
        stamp = render_time(demo.DEMO_END_MS - 900 * 86_400_000 + n * 1000, n)
        return {"id": w.location_id, "name": w.location_name, "type": "default",
                "location_type": "default", "is_primary": w.is_primary,
                "is_unavailable_quantity": False, "email": None, "phone": None,
                "address1": None, "address2": None, "zip": None, "city": None,
                "province": None, "province_code": None, "district": None,
                "district_code": None, "ward": None, "ward_code": None, "country": "Vietnam",
                "country_code": "VN", "country_name": "Vietnam",
                "created_at": stamp, "updated_at": stamp}

    def _load_demo(self, order_count: int) -> None:
        self._demo_customers = demo.demo_customers(self.seed)
        for c in self._demo_customers:
            self.customers[c["id"]] = copy.deepcopy(c)
        products, stock = demo.demo_products(self.seed)
        for p in products:
            self._index_product(p)
            for v in p["variants"]:
                self._demo_variants[v["sku"]] = (p["id"], v["id"])
        for (loc, vid), qty in stock.items():
            self._level(loc, vid)["qty_onhand"] = qty
        newest = 0
        stats: dict[int, list] = {}
        for plan in self.orders.load_plans(self.seed, order_count):
            newest = max(newest, plan.updated_ms)
            if plan.customer is not None:
                cid = demo.GUEST_CUSTOMER_ID if plan.customer == -1 else demo.CUSTOMER_ID_BASE + plan.customer
                entry = stats.setdefault(cid, [0, 0, None])
                entry[0] += 1
                if not plan.statuses[2]:
                    entry[1] += plan.total
                entry[2] = plan
        for cid, (n, spent, last) in stats.items():
            c = self.customers[cid]
            c.update(orders_count=n, total_spent=money(spent), last_order_id=last.id,
                     last_order_name=f"#{100001 + last.index}",
                     last_order_date=render_time(last.created_ms, last.index))
        self._last_ms = newest

    def _build_demo_order(self, plan: OrderPlan) -> dict[str, Any]:
        return demo.build_order(plan, self._demo_customers, self._demo_variants)

    # -- time and ids -----------------------------------------------------------------
    def tick(self) -> int:
        """Now in ms, strictly after every stamp handed out, so each change is orderable."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def stamp(self, record: dict[str, Any], salt: int = 0) -> int:
        ms = self.tick()
        record["updated_at"] = render_time(ms, salt or record.get("id", 0))
        return ms

    # -- customers --------------------------------------------------------------------
    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        errors = {}
        for field in ("email", "phone"):
            value = body.get(field)
            if value and any(c.get(field) == value for c in self.customers.values()):
                errors[field] = [f"{field} has already been taken"]
        if not (body.get("email") or body.get("phone") or body.get("first_name") or body.get("last_name")):
            errors["customer"] = ["must have a name, email or phone"]
        if errors:
            raise ApiError(422, errors)
        cid = self.new_id()
        ms = self.tick()
        addresses = []
        for n, a in enumerate(body.get("addresses") or []):
            addresses.append(dict(a, id=self.new_id(), default=n == 0))
        customer = {
            "id": cid, "email": body.get("email"), "phone": body.get("phone"),
            "first_name": body.get("first_name"), "last_name": body.get("last_name"),
            "gender": body.get("gender"), "birthday": body.get("birthday"),
            "accepts_marketing": bool(body.get("accepts_marketing")),
            "verified_email": bool(body.get("verified_email")), "state": "Disabled",
            "tags": body.get("tags"), "note": body.get("note"), "group_name": None,
            "multipass_identifier": None, "orders_count": 0, "total_spent": 0.0,
            "total_paid": 0.0, "last_order_id": None, "last_order_name": None,
            "last_order_date": None, "created_at": render_time(ms, cid),
            "updated_at": render_time(ms, cid), "addresses": addresses,
            "default_address": addresses[0] if addresses else None}
        self.customers[cid] = customer
        self.on_event("customers/create", customer)
        return customer

    def update_customer(self, cid: int, body: dict[str, Any]) -> dict[str, Any]:
        customer = self.customers.get(cid)
        if customer is None:
            raise not_found()
        for field in ("email", "phone"):
            value = body.get(field)
            if value and any(c.get(field) == value and c["id"] != cid for c in self.customers.values()):
                raise ApiError(422, {field: [f"{field} has already been taken"]})
        for key in ("email", "phone", "first_name", "last_name", "tags", "note", "gender",
                    "birthday", "accepts_marketing", "verified_email"):
            if key in body:
                customer[key] = body[key]
        self.stamp(customer)
        self.on_event("customers/update", customer)
        return customer

    # -- products and stock -----------------------------------------------------------
    def _index_product(self, product: dict[str, Any]) -> None:
        self.products[product["id"]] = product
        for v in product["variants"]:
            self.variant_product[v["id"]] = product["id"]

    def _level(self, loc: int, vid: int) -> dict[str, Any]:
        level = self.inventory.get((loc, vid))
        if level is None:
            level = self.inventory[(loc, vid)] = {
                "id": self.new_id(), "loc_id": loc, "product_id": self.variant_product.get(vid),
                "variant_id": vid, "qty_onhand": 0, "qty_commited": 0, "qty_incoming": 0,
                "updated_ms": self._last_ms or demo.DEMO_END_MS}
        return level

    def level_json(self, level: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in level.items() if k != "updated_ms"}
        out["qty_available"] = level["qty_onhand"] - level["qty_commited"]
        out["updated_at"] = render_time(level["updated_ms"], level["id"])
        return out

    def product_json(self, product: dict[str, Any]) -> dict[str, Any]:
        """The product with each variant's read-only stock figures filled in."""
        out = copy.deepcopy(product)
        for v in out["variants"]:
            levels = [lv for (loc, vid), lv in self.inventory.items() if vid == v["id"]]
            onhand = sum(lv["qty_onhand"] for lv in levels)
            committed = sum(lv["qty_commited"] for lv in levels)
            v["inventory_quantity"] = onhand - committed
            v["old_inventory_quantity"] = onhand - committed
            v["inventory_advance"] = {"qty_available": onhand - committed, "qty_onhand": onhand,
                                      "qty_commited": committed,
                                      "qty_incoming": sum(lv["qty_incoming"] for lv in levels)}
        return out

    def _variant(self, data: dict[str, Any], product_id: int, position: int, stamp: str) -> dict[str, Any]:
        return {
            "id": self.new_id(), "product_id": product_id,
            "title": " / ".join(str(data[o]) for o in ("option1", "option2", "option3") if data.get(o))
                     or "Default Title",
            "option1": data.get("option1") or "Default Title", "option2": data.get("option2"),
            "option3": data.get("option3"), "sku": data.get("sku"), "barcode": data.get("barcode"),
            "price": money(dec(data.get("price"))),
            "compare_at_price": money(dec(data.get("compare_at_price"))),
            "grams": float(data.get("grams") or 0),
            # New variants come back untracked unless asked ([DOC-EX]).
            "inventory_management": data.get("inventory_management") or None,
            "inventory_policy": data.get("inventory_policy") or "deny",
            "requires_shipping": data.get("requires_shipping", True),
            "taxable": data.get("taxable", False), "position": position,
            "created_at": stamp, "updated_at": stamp}

    def _check_product(self, body: dict[str, Any], product_id: int | None) -> None:
        errors: dict[str, list[str]] = {}
        if product_id is None and not (body.get("title") or "").strip():
            errors["title"] = ["can't be blank"]
        variants = body.get("variants") or []
        if len(variants) > 100:
            errors["variants"] = ["a product has at most 100 variants"]
        if len(body.get("options") or []) > 3:
            errors["options"] = ["a product has at most 3 options"]
        if errors:
            raise ApiError(422, errors)

    def create_product(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_product(body, None)
        pid = self.new_id()
        ms = self.tick()
        stamp = render_time(ms, pid)
        variants_in = body.get("variants") or [{}]    # omitted: one "Default Title" variant
        product = {
            "id": pid, "title": body["title"], "handle": body.get("handle") or f"san-pham-{pid}",
            "body_html": body.get("body_html") or "", "body_plain": None,
            "vendor": body.get("vendor") or "Khác", "product_type": body.get("product_type") or "",
            "tags": body.get("tags") or "",
            "published_at": None if body.get("published") is False else stamp,
            "published_scope": "global", "template_suffix": None, "only_hide_from_list": False,
            "not_allow_promotion": False, "images": [],
            "options": body.get("options") or [{"name": "Title", "position": 1}],
            "variants": [], "created_at": stamp, "updated_at": stamp}
        for n, v in enumerate(variants_in):
            product["variants"].append(self._variant(v, pid, n + 1, stamp))
        self._index_product(product)
        self.on_event("products/create", self.product_json(product))
        return product

    def update_product(self, pid: int, body: dict[str, Any]) -> dict[str, Any]:
        product = self.products.get(pid)
        if product is None:
            raise not_found()
        self._check_product(body, pid)
        ms = self.tick()
        stamp = render_time(ms, pid)
        for key in ("title", "body_html", "vendor", "product_type", "tags", "handle", "options"):
            if key in body:
                product[key] = body[key]
        if "variants" in body:
            by_id = {v["id"]: v for v in product["variants"]}
            kept = []
            for n, data in enumerate(body["variants"] or []):
                existing = by_id.get(data.get("id")) if data.get("id") else None
                if data.get("id") and existing is None:
                    raise ApiError(422, {"variants": [f"variant {data['id']} is not in product {pid}"]})
                if existing is None:
                    existing = self._variant(data, pid, n + 1, stamp)
                    self.variant_product[existing["id"]] = pid
                else:
                    self._apply_variant(existing, data)
                existing["position"] = n + 1
                existing["updated_at"] = stamp
                kept.append(existing)
            # Like Shopify, a PUT with variants replaces the list ([INF]).
            product["variants"] = kept
        product["updated_at"] = stamp
        self.on_event("products/update", self.product_json(product))
        return product

    @staticmethod
    def _apply_variant(variant: dict[str, Any], data: dict[str, Any]) -> None:
        for key in ("option1", "option2", "option3", "sku", "barcode", "grams",
                    "inventory_management", "inventory_policy", "requires_shipping", "taxable"):
            if key in data:
                variant[key] = data[key]
        for key in ("price", "compare_at_price"):
            if key in data:
                variant[key] = money(dec(data[key]))

    def update_variant(self, vid: int, body: dict[str, Any]) -> dict[str, Any]:
        pid = self.variant_product.get(vid)
        if pid is None or pid not in self.products:
            raise not_found()
        product = self.products[pid]
        variant = next(v for v in product["variants"] if v["id"] == vid)
        self._apply_variant(variant, body)
        ms = self.tick()
        variant["updated_at"] = product["updated_at"] = render_time(ms, vid)
        self.on_event("products/update", self.product_json(product))
        return variant

    def add_variant(self, pid: int, body: dict[str, Any]) -> dict[str, Any]:
        product = self.products.get(pid)
        if product is None:
            raise not_found()
        if len(product["variants"]) >= 100:
            raise ApiError(422, {"variants": ["a product has at most 100 variants"]})
        ms = self.tick()
        stamp = render_time(ms, pid)
        variant = self._variant(body, pid, len(product["variants"]) + 1, stamp)
        product["variants"].append(variant)
        self.variant_product[variant["id"]] = pid
        product["updated_at"] = stamp
        self.on_event("products/update", self.product_json(product))
        return variant

    def adjust_or_set(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /inventories/adjustorset.json. ``set`` overwrites on-hand (or, with
        set_target="available", makes on-hand − committed equal the quantity)."""
        errors: dict[str, list[str]] = {}
        loc = body.get("location_id")
        kind = body.get("type") or "adjust"
        reason = body.get("reason") or "newproduct"
        lines = body.get("line_items") or []
        if loc not in self.locations:
            errors["location_id"] = [f"location {loc} not found"]
        if kind not in ("adjust", "set"):
            errors["type"] = ["must be adjust or set"]
        if reason not in ("newproduct", "returned", "productionofgoods", "damaged", "shrinkage",
                          "promotion", "transfer"):
            errors["reason"] = [f"unknown reason {reason}"]
        if not lines:
            errors["line_items"] = ["can't be blank"]
        if len(lines) > 200:    # [DOC] the rate-limit page allows 200, the page itself 100
            errors["line_items"] = ["at most 200 line items per call"]
        resolved = []
        for n, line in enumerate(lines):
            vid = line.get("product_variant_id") or line.get("variant_id")
            qty = line.get("quantity")
            if vid not in self.variant_product or (
                    line.get("product_id") not in (None, self.variant_product.get(vid))):
                errors.setdefault("line_items", []).append(f"line {n}: variant {vid} not found")
                continue
            if not isinstance(qty, int) or isinstance(qty, bool):
                if isinstance(qty, Decimal) and qty == qty.to_integral_value():
                    qty = int(qty)
                else:
                    errors.setdefault("line_items", []).append(f"line {n}: quantity must be an integer")
                    continue
            resolved.append((vid, qty))
        if errors or loc is None:       # (a missing location is among the errors)
            raise ApiError(422, errors)
        ms = self.tick()
        out_lines = []
        total = 0
        for vid, qty in resolved:
            level = self._level(loc, vid)
            level["product_id"] = self.variant_product[vid]
            if kind == "set":
                target = qty + (level["qty_commited"] if self.set_target == "available" else 0)
                change = target - level["qty_onhand"]
                level["qty_onhand"] = target
            else:
                change = qty
                level["qty_onhand"] += qty
            level["updated_ms"] = ms
            total += change
            variant = next(v for v in self.products[self.variant_product[vid]]["variants"]
                           if v["id"] == vid)
            out_lines.append({"product_id": self.variant_product[vid], "product_variant_id": vid,
                              "quantity": change, "cost_amount": 0.0, "sku": variant.get("sku"),
                              "barcode": variant.get("barcode")})
        adjustment = {"id": self.new_id(), "adjust_number": f"IA{100001 + len(self.adjustments)}",
                      "location_id": loc, "type": kind, "reason": reason, "note": body.get("note"),
                      "tags": body.get("tags"), "tran_date": render_time(ms, loc),
                      "total_quantity": total, "total_cost": 0.0, "line_items": out_lines,
                      "created_at": render_time(ms, loc)}
        self.adjustments.append(adjustment)
        return adjustment

    def move_stock(self, loc: int, vid: int, change: int) -> None:
        if vid in self.variant_product:
            level = self._level(loc, vid)
            level["qty_onhand"] += change
            level["updated_ms"] = self.tick()

    # -- orders -----------------------------------------------------------------------
    def get_order(self, oid: int) -> dict[str, Any]:
        order = self.orders.get(oid)
        if order is None:
            raise not_found()
        return order

    def _save(self, order: dict[str, Any], *topics: str) -> dict[str, Any]:
        ms = self.tick()
        order["updated_at"] = render_time(ms, order["id"] + ms)
        self.orders.put(order, ms)
        for topic in topics + ("orders/updated",):
            self.on_event(topic, order)
        return order

    def store_raw_order(self, record: dict[str, Any]) -> dict[str, Any]:
        """Keep ``record`` as it is, as a shop's database may hold it after a bug, an import or
        an app's write (for tests of hostile data): only ``id`` (when missing or not an int)
        and ``updated_at`` are set, so that it can be listed and paged."""
        order = copy.deepcopy(record)
        if type(order.get("id")) is not int or order["id"] in self.orders.summary:
            order["id"] = self.new_id()
        ms = self.tick()
        order["updated_at"] = render_time(ms, order["id"] + ms)
        self.orders.put(order, ms)
        return order

    def create_order(self, body: dict[str, Any]) -> dict[str, Any]:
        lines_in = body.get("line_items") or []
        if not lines_in:
            raise ApiError(422, {"line_items": ["can't be blank"]})
        oid = self.new_id()
        ms = self.tick()
        stamp = render_time(ms, oid)
        line_items = []
        for k, data in enumerate(lines_in):
            vid = data.get("variant_id")
            variant = product = None
            if vid is None and data.get("sku"):
                for p in self.products.values():
                    for v in p["variants"]:
                        if v.get("sku") == data["sku"]:
                            variant, product = v, p
            elif vid in self.variant_product:
                product = self.products[self.variant_product[vid]]
                variant = next(v for v in product["variants"] if v["id"] == vid)
            if variant is None and data.get("price") is None:
                raise ApiError(422, {"line_items": [f"line {k}: unknown variant and no price"]})
            qty = int(data.get("quantity") or 1)
            original = dec(data.get("price", variant["price"] if variant else 0))
            promo = dec(data.get("total_discount"))
            line_items.append({
                "id": oid * 10 + k, "product_id": product["id"] if product else None,
                "variant_id": variant["id"] if variant else None,
                "sku": variant.get("sku") if variant else data.get("sku"),
                "barcode": variant.get("barcode") if variant else None,
                "title": product["title"] if product else data.get("title", "Custom item"),
                "variant_title": variant["title"] if variant else None,
                "name": product["title"] if product else data.get("title", "Custom item"),
                "vendor": product["vendor"] if product else None,
                "type": product["product_type"] if product else None,
                "quantity": qty, "price": money(original - promo), "price_original": money(original),
                "price_promotion": 0.0, "total_discount": money(promo),
                "applied_discounts": ([{"description": "Khuyến mãi", "amount": money(promo)}]
                                      if promo else []),
                "properties": None, "fulfillable_quantity": qty,
                "fulfillment_status": "notfulfilled", "grams": 0.0, "requires_shipping": True,
                "taxable": False, "tax_lines": [], "gift_card": False,
                "product_exists": product is not None, "not_allow_promotion": False,
                "ma_cost_amount": 0.0, "image": None})
        taxes_included = bool(body.get("taxes_included"))
        self._tax(body, lines_in, line_items, taxes_included)
        tax = sum((dec(t["price"]) for li in line_items for t in li["tax_lines"]), Decimal(0))
        line_total = sum(dec(li["price"]) * li["quantity"] for li in line_items)
        codes = body.get("discount_codes") or []
        discount = sum(dec(c.get("amount")) for c in codes)
        shipping_lines = [{"code": s.get("code"), "title": s.get("title"),
                           "price": money(dec(s.get("price"))), "source": s.get("source")}
                          for s in body.get("shipping_lines") or []]
        shipping = sum(dec(s["price"]) for s in shipping_lines)
        # Tax on top is added; tax inside the prices is already in them ([DOC-EX] formula).
        total = line_total - discount + shipping + (0 if taxes_included else tax)
        customer = None
        cust_in = body.get("customer")
        if cust_in:
            email = cust_in.get("email")
            match = self.customers.get(cust_in.get("id")) or next(
                (c for c in self.customers.values() if email and c.get("email") == email), None)
            if match is None:
                match = self.create_customer(cust_in)
            customer = {k: match[k] for k in demo.EMBEDDED_CUSTOMER_FIELDS}
        location_id = body.get("location_id") or next(w.location_id for w in WAREHOUSES if w.is_primary)
        gateway = body.get("gateway") or ""
        order: dict[str, Any] = {
            "id": oid, "order_number": f"#{200000 + oid % 100000}", "name": f"#{200000 + oid % 100000}",
            "number": oid, "token": f"t{oid:x}", "created_at": stamp, "updated_at": stamp,
            "processed_at": stamp, "confirmed_at": None, "closed_at": None, "cancelled_at": None,
            "currency": "VND", "email": body.get("email") or (customer or {}).get("email"),
            "contact_email": body.get("email") or (customer or {}).get("email"),
            "phone": body.get("phone"), "source_name": body.get("source_name") or "api",
            "source": body.get("source_name") or "api", "gateway": gateway,
            "gateway_code": body.get("gateway_code") or "", "processing_method": None,
            "financial_status": "pending", "fulfillment_status": "notfulfilled",
            "cancelled_status": "uncancelled", "confirmed_status": "unconfirmed",
            "closed_status": "unclosed", "cancel_reason": None,
            "order_processing_status": "confirmed", "omni_order_status": 0,
            "omni_order_status_name": None, "location_id": location_id,
            "location_name": self.locations.get(location_id, {}).get("name"),
            "assigned_location_id": location_id, "assigned_location_name": None,
            "user_id": 0, "confirm_user": None, "note": body.get("note"),
            "note_attributes": body.get("note_attributes") or [], "tags": body.get("tags") or "",
            "discount_codes": [{"code": c.get("code"), "amount": money(dec(c.get("amount"))),
                                "type": c.get("type") or "fixed_amount", "is_coupon_code": True}
                               for c in codes],
            "total_line_items_price": money(line_total), "subtotal_price": money(line_total),
            "total_discounts": money(discount), "total_tax": money(tax),
            "tax_lines": facts.order_tax_lines(line_items), "taxes_included": taxes_included,
            "total_price": money(total), "total_weight": 0.0,
            "shipping_lines": shipping_lines, "line_items": line_items, "customer": customer,
            "shipping_address": body.get("shipping_address"),
            "billing_address": body.get("billing_address"),
            "transactions": [], "fulfillments": [], "refunds": [],
            "ref_order_id": 0, "ref_order_number": None, "prev_order_id": 0, "prev_order_number": None}
        # Creating an order takes no payment ([DOC]); a pending transaction records the amount due.
        order["transactions"].append(self._transaction(order, "pending", total, gateway, status=None))
        self.orders.put(order, ms)
        if customer:
            c = self.customers[customer["id"]]
            c["orders_count"] += 1
            c["total_spent"] = money(dec(c["total_spent"]) + total)
            c.update(last_order_id=oid, last_order_name=order["name"], last_order_date=stamp)
            self.stamp(c)
        self.on_event("orders/create", order)
        return order

    @staticmethod
    def _tax(body: dict[str, Any], lines_in: list[dict[str, Any]], line_items: list[dict[str, Any]],
             taxes_included: bool) -> None:
        """Each line's ``tax_lines`` from its own ``tax_lines`` (``[{title, rate}]``, or with a
        ``price``) or else the order's sandbox-only ``tax_rate`` (with ``tax_title``). Neither:
        no tax, as in most shops ([DOC] "usually 0")."""
        default: list[dict[str, Any]] = []
        if body.get("tax_rate") not in (None, ""):
            default = [{"title": body.get("tax_title") or "VAT", "rate": body["tax_rate"]}]
        try:
            facts.tax_rate(body.get("tax_rate"), "tax_rate")
            for k, (li, data) in enumerate(zip(line_items, lines_in)):
                asked = data.get("tax_lines") or default
                li["tax_lines"] = facts.line_taxes(li, asked, taxes_included, f"line_items[{k}].tax_lines")
                li["taxable"] = bool(li["tax_lines"])
        except facts.FactError as exc:
            raise refused(exc.field, exc.message) from None

    def update_order(self, oid: int, body: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.materialise(oid)
        # Only a few attributes are editable ([DOC]); items and quantities never are.
        for key in ("note", "note_attributes", "tags", "email", "phone"):
            if key in body:
                order[key] = body[key]
        return self._save(order)

    @staticmethod
    def _is_cod(order: dict[str, Any], gateway: Any) -> bool:
        """Whether money on ``gateway`` is cash on delivery: the order's own gateway on a COD
        order, or a gateway named COD ([INF]: Haravan sets ``is_cod_gateway`` per transaction)."""
        if gateway == order.get("gateway") and order.get("gateway_code") == "COD":
            return True
        return str(gateway or "").strip().lower() in facts.COD_GATEWAY_NAMES

    def _transaction(self, order: dict[str, Any], kind: str, amount: Decimal, gateway: str | None = None,
                     status: str | None = "success", parent_id: int | None = None) -> dict[str, Any]:
        ms = self._last_ms or self.tick()
        gateway = gateway if gateway is not None else order.get("gateway")
        return {"id": self.new_id(), "order_id": order["id"], "kind": kind, "amount": money(amount),
                "status": status, "gateway": gateway,
                "currency": "VND", "parent_id": parent_id, "location_id": order.get("location_id"),
                "user_id": demo.STAFF_USER_ID, "is_cod_gateway": self._is_cod(order, gateway),
                "test": False, "external_transaction_id": None,
                "created_at": render_time(ms, order["id"] + len(order["transactions"]))}

    @staticmethod
    def paid_amount(order: dict[str, Any]) -> tuple[Decimal, Decimal]:
        """(captured, refunded) money of an order, from its transactions."""
        captured = sum((dec(t["amount"]) for t in order["transactions"]
                        if str(t["kind"]).lower() in ("capture", "sale") and t.get("status") != "failure"),
                       Decimal(0))
        refunded = -sum((dec(t["amount"]) for t in order["transactions"]
                         if str(t["kind"]).lower() == "refund"), Decimal(0))
        return captured, refunded

    def _settle_financial_status(self, order: dict[str, Any]) -> None:
        captured, refunded = self.paid_amount(order)
        total = dec(order["total_price"])
        if refunded > 0:
            order["financial_status"] = "refunded" if refunded >= captured else "partially_refunded"
        elif captured >= total and total > 0:
            order["financial_status"] = "paid"
        elif captured > 0:
            order["financial_status"] = "partiallypaid"     # as the API spells it ([DOC-EX])
        elif any(str(t["kind"]).lower() == "void" for t in order["transactions"]):
            order["financial_status"] = "voided"

    def _capture(self, order: dict[str, Any], amount: Decimal | None, gateway: str | None) -> dict[str, Any]:
        """Record money in: ``amount`` (default: all still due) on ``gateway`` (default: the
        order's). Refused above what is still due."""
        captured, _ = self.paid_amount(order)
        due = dec(order["total_price"]) - captured
        if amount is None or amount == 0:
            amount = due
        if due <= 0:
            raise refused("order", "order is already paid")
        if amount < 0 or amount > due:
            raise refused("amount", f"{amount} exceeds the {due} still due")
        parent = next((t["id"] for t in order["transactions"] if t["kind"] == "pending"), None)
        tx = self._transaction(order, "capture", amount, gateway, parent_id=parent)
        order["transactions"].append(tx)
        self._settle_financial_status(order)
        return tx

    def _saved_after_payment(self, order: dict[str, Any], before: str) -> dict[str, Any]:
        topics = ("orders/paid",) if order["financial_status"] == "paid" and before != "paid" else ()
        return self._save(order, *topics)

    def add_transaction(self, oid: int, body: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.materialise(oid)
        kind = str(body.get("kind") or "").lower()
        if kind not in ("pending", "authorization", "sale", "capture", "void", "refund"):
            raise ApiError(422, {"kind": ["must be one of Pending, Authorization, Sale, Capture, "
                                          "Void, Refund"]})
        before = order["financial_status"]
        amount = dec(body.get("amount"))
        if kind in ("capture", "sale"):
            tx = self._capture(order, amount, body.get("gateway"))
            tx["kind"] = kind
            self._saved_after_payment(order, before)
            return tx
        if kind == "refund":
            captured, refunded = self.paid_amount(order)
            amount = abs(amount)
            if amount <= 0 or amount > captured - refunded:
                raise ApiError(422, {"amount": ["exceeds the amount that can be refunded"]})
            amount = -amount
        parent = next((t["id"] for t in order["transactions"] if t["kind"] == "pending"), None)
        tx = self._transaction(order, kind, amount, body.get("gateway"), parent_id=parent)
        order["transactions"].append(tx)
        self._settle_financial_status(order)
        self._saved_after_payment(order, before)
        return tx

    def pay_order(self, oid: int, gateway: str | None, amount: Any = None) -> dict[str, Any]:
        """The staff records a payment (admin route): ``amount`` (default: all still due) on
        ``gateway`` (default: the order's, which a payment never changes)."""
        order = self.orders.materialise(oid)
        before = order["financial_status"]
        value = None if amount in (None, "") else dec(amount)
        self._capture(order, value, gateway or None)
        return self._saved_after_payment(order, before)

    # -- refunds and cancellation -----------------------------------------------------
    def _restock_location(self, order: dict[str, Any], line_id: int, asked: Any) -> int:
        """Where returned goods go: the refund's ``location_id``, else the location of the
        last fulfilment that shipped the line, else the order's ([INF])."""
        if asked is not None:
            loc = int(asked)
            if loc not in self.locations:
                raise refused("location_id", f"location {loc} not found")
            return loc
        for f in reversed(order["fulfillments"]):
            if any(fl["id"] == line_id for fl in f["line_items"]) and f.get("location_id"):
                return int(f["location_id"])
        if order.get("location_id") is None:     # only a raw order (store_raw_order) lacks one
            raise refused("location_id", f"order {order['id']} has no location_id to restock into")
        return int(order["location_id"])

    @staticmethod
    def _last_capture_gateway(order: dict[str, Any]) -> str | None:
        """Money refunded without a gateway goes back the way it came in: the gateway of the
        last capture ([INF]; the order's gateway when nothing was captured)."""
        captures = [t for t in order["transactions"] if str(t["kind"]).lower() in ("capture", "sale")]
        return captures[-1].get("gateway") if captures else None

    def _refund(self, order: dict[str, Any], data: dict[str, Any]) -> dict[str, Any] | None:
        """Apply a refund (lines, restock, money); None when it returns nothing.

        A refunded unit that never shipped just leaves the order; one that shipped is a return,
        and ``restock`` puts only those back in stock (facts.left_to_ship)."""
        lines_by_id = {li["id"]: li for li in order["line_items"]}
        sent, back = facts.shipped(order), facts.refunded(order)
        refund_lines = []
        coming_back: dict[int, int] = {}       # line id -> shipped units this refund returns
        for rl in data.get("refund_line_items") or []:
            li = lines_by_id.get(rl.get("line_item_id"))
            if li is None:
                raise refused("refund_line_items", f"line item {rl.get('line_item_id')} not in order")
            qty = _count(rl.get("quantity"), "refund_line_items.quantity")
            before = back.get(li["id"], 0)
            if qty + before > li["quantity"]:
                raise refused("refund_line_items", f"quantity {qty} exceeds the {li['quantity'] - before} "
                                                   f"that can still be refunded of line {li['id']}")
            back[li["id"]] = before + qty
            out, ordered = sent.get(li["id"], 0), li["quantity"]
            coming_back[li["id"]] = coming_back.get(li["id"], 0) + (
                facts.returned(ordered, out, before + qty) - facts.returned(ordered, out, before))
            refund_lines.append({"id": self.new_id(), "line_item_id": li["id"], "quantity": qty,
                                 "line_item": copy.deepcopy(li)})
        captured, refunded = self.paid_amount(order)
        transactions = []
        for t in data.get("transactions") or []:
            amount = abs(dec(t.get("amount")))
            if amount > captured - refunded:
                raise refused("transactions", f"refund of {amount} exceeds the {captured - refunded} "
                                              "paid and not yet refunded")
            if amount:
                refunded += amount
                transactions.append(self._transaction(order, "refund", -amount,
                                                      t.get("gateway") or self._last_capture_gateway(order)))
        if not refund_lines and not transactions:
            return None
        restock = bool(data.get("restock"))
        restocked_at = None
        if restock:
            for line_id, units in coming_back.items():
                li = lines_by_id[line_id]
                if units and li.get("variant_id"):
                    loc = self._restock_location(order, line_id, data.get("location_id"))
                    restocked_at = restocked_at or loc
                    self.move_stock(loc, li["variant_id"], units)
                li["fulfillment_status"] = "restock"
        ms = self.tick()
        refund = {"id": self.new_id(), "order_id": order["id"],
                  "created_at": render_time(ms, order["id"]),
                  "note": data.get("note"), "restock": restock, "user_id": demo.STAFF_USER_ID,
                  "location_id": restocked_at,
                  "refund_line_items": refund_lines, "transactions": transactions}
        order["refunds"].append(refund)
        order["transactions"].extend(transactions)
        facts.settle_lines(order)
        self._settle_financial_status(order)
        return refund

    def create_refund(self, oid: int, body: dict[str, Any]) -> dict[str, Any] | None:
        """The refund made, or None when the lines and transactions asked for return nothing."""
        order = self.orders.materialise(oid)
        if not body.get("refund_line_items") and not body.get("transactions"):
            raise ApiError(422, {"refund": ["needs refund_line_items or transactions"]})
        refund = self._refund(order, body)
        self._save(order, "refunds/create")
        return refund

    def cancel_order(self, oid: int, body: dict[str, Any]) -> dict[str, Any]:
        order = self.orders.materialise(oid)
        if order["cancelled_status"] == "cancelled":
            raise ApiError(422, {"order": ["order is already cancelled"]})
        reason = body.get("reason")
        if reason is not None and reason not in ("customer", "inventory", "fraud", "declined", "other"):
            raise ApiError(422, {"reason": ["must be customer, inventory, fraud, declined or other"]})
        refund_data = dict(body.get("refund") or {})
        if body.get("amount") not in (None, "", 0, "0"):
            refund_data.setdefault("transactions", []).append({"amount": body["amount"], "kind": "refund"})
        if body.get("restock"):
            refund_data["restock"] = True
            if not refund_data.get("refund_line_items"):
                # Every unit not refunded yet: the shipped ones come back, the others just go.
                back = facts.refunded(order)
                refund_data["refund_line_items"] = [
                    {"line_item_id": li["id"], "quantity": li["quantity"] - back.get(li["id"], 0)}
                    for li in order["line_items"] if li["quantity"] > back.get(li["id"], 0)]
        refund_data.setdefault("note", body.get("note"))
        if refund_data.get("refund_line_items") or refund_data.get("transactions"):
            self._refund(order, refund_data)
        ms = self.tick()
        order["cancelled_status"] = "cancelled"
        order["cancelled_at"] = render_time(ms, oid)
        # With only an amount the documentation's example shows "other" ([DOC-EX]).
        order["cancel_reason"] = reason or "other"
        facts.settle_lines(order)
        return self._save(order, "orders/cancelled")

    # -- fulfilments and carriers -----------------------------------------------------
    @staticmethod
    def _cod_open(order: dict[str, Any]) -> Decimal:
        """COD the carriers still have to collect on the order's fulfilments."""
        return sum((dec(f.get("cod_amount")) for f in order["fulfillments"]
                    if f.get("carrier_cod_status_code") == "codpending"), Decimal(0))

    def _lines_to_ship(self, order: dict[str, Any], asked: Any) -> list[tuple[dict[str, Any], int]]:
        """(line, units) to ship: ``asked`` (``[{"id", "quantity"}]``; quantity omitted = all
        left of that line) or, when omitted or empty, everything left."""
        if not asked:
            lines = [(li, li["fulfillable_quantity"]) for li in order["line_items"]
                     if li["fulfillable_quantity"] > 0]
            if not lines:
                raise refused("order", "nothing left to fulfil")
            return lines
        if not isinstance(asked, list) or not all(isinstance(a, dict) for a in asked):
            raise refused("line_items", 'must be a list of {"id": <line item id>, "quantity": n}')
        by_id = {li["id"]: li for li in order["line_items"]}
        wanted: dict[int, int] = {}
        for n, a in enumerate(asked):
            li = by_id.get(a.get("id"))
            if li is None:
                raise refused("line_items", f"line item {a.get('id')} not in order {order['id']}")
            qty = (li["fulfillable_quantity"] if a.get("quantity") is None
                   else _count(a["quantity"], f"line_items[{n}].quantity"))
            wanted[li["id"]] = wanted.get(li["id"], 0) + qty
            if qty <= 0 or wanted[li["id"]] > li["fulfillable_quantity"]:
                raise refused("line_items", f"{wanted[li['id']]} of line {li['id']} asked, "
                                            f"{li['fulfillable_quantity']} left to fulfil")
        return [(by_id[line_id], qty) for line_id, qty in wanted.items()]

    def create_fulfillment(self, oid: int, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /orders/{id}/fulfillments.json``: ship some or all of what is left, from one
        location; stock there goes down by the shipped units. On a COD order the carrier is to
        collect what is still due (``cod_amount``; give it to split COD over shipments)."""
        order = self.orders.materialise(oid)
        if order["cancelled_status"] == "cancelled":
            raise refused("order", "a cancelled order cannot be fulfilled")
        raw_loc = body.get("location_id")
        loc = _count(raw_loc, "location_id") if raw_loc is not None else order.get("location_id")
        if loc not in self.locations:
            raise refused("location_id", f"location {loc} not found")
        lines = self._lines_to_ship(order, body.get("line_items"))
        captured, _ = self.paid_amount(order)
        still_due = max(Decimal(0), dec(order["total_price"]) - captured - self._cod_open(order))
        if body.get("cod_amount") is not None:
            cod = dec(body["cod_amount"])
            if cod < 0 or cod > still_due:
                raise refused("cod_amount", f"{cod} is more than the {still_due} left to collect")
        else:
            cod = still_due if order.get("gateway_code") == "COD" else Decimal(0)
        fid = self.new_id()
        ms = self.tick()
        stamp = render_time(ms, fid)
        number = body.get("tracking_number") or f"S{fid % 10_000_000}"
        fulfillment: dict[str, Any] = {
            "id": fid, "order_id": oid, "status": "success", "location_id": loc,
            "location_name": self.locations[loc]["name"],
            "tracking_company": body.get("tracking_company") or "Giao hàng tiết kiệm",
            "tracking_number": number, "tracking_numbers": [number],
            "tracking_url": body.get("tracking_url"),
            "tracking_urls": [body["tracking_url"]] if body.get("tracking_url") else [],
            "notify_customer": bool(body.get("notify_customer")), "note": body.get("note"),
            "cod_amount": money(cod),
            "carrier_status_code": "readytopick",
            "carrier_status_name": facts.CARRIER_STATUSES["readytopick"][0],
            "carrier_cod_status_code": "codpending" if cod else "none",
            **{field: None for field in facts.DATE_FIELDS},
            "created_at": stamp, "updated_at": stamp,
            "line_items": [{"id": li["id"], "variant_id": li["variant_id"], "sku": li["sku"],
                            "quantity": qty} for li, qty in lines]}
        fulfillment["ready_to_pick_date"] = stamp
        if cod:
            fulfillment["cod_pending_date"] = stamp
        for li, qty in lines:
            if li.get("variant_id"):
                self.move_stock(loc, li["variant_id"], -qty)
        order["fulfillments"].append(fulfillment)
        facts.settle_lines(order)
        topics = ("orders/fulfilled",) if order["fulfillment_status"] == "fulfilled" else ()
        self._save(order, *topics)
        return fulfillment

    def fulfill_order(self, oid: int, body: dict[str, Any]) -> dict[str, Any]:
        """The admin route: as create_fulfillment, answering the order."""
        self.create_fulfillment(oid, body)
        return self.get_order(oid)

    def get_fulfillment(self, oid: int, fid: int) -> dict[str, Any]:
        found = next((f for f in self.get_order(oid)["fulfillments"] if f["id"] == fid), None)
        if found is None:
            raise not_found()
        return found

    def move_carrier(self, oid: int, fid: int, body: dict[str, Any]) -> dict[str, Any]:
        """A carrier's news about one fulfilment (admin route): ``status`` (a carrier status
        code) and/or ``cod`` (a COD status code). When the COD money reaches the carrier
        (``codpaid``, or ``codreceipt`` straight away) Haravan records it as a capture on the
        COD gateway ([UNK] which status records it; the carrier's remittance is not recorded
        again)."""
        order = self.orders.materialise(oid)
        fulfillment = next((f for f in order["fulfillments"] if f["id"] == fid), None)
        if fulfillment is None:
            raise not_found()
        status, cod = body.get("status"), body.get("cod")
        if status is None and cod is None:
            raise refused("status", "give a carrier status, a cod status, or both")
        if status is not None and status not in facts.CARRIER_STATUSES:
            raise refused("status", f"{status!r} is not one of {', '.join(facts.CARRIER_STATUSES)}")
        if cod is not None and cod not in facts.COD_STATUSES:
            raise refused("cod", f"{cod!r} is not one of {', '.join(facts.COD_STATUSES)}")
        was = fulfillment.get("carrier_cod_status_code") or "none"
        amount = dec(fulfillment.get("cod_amount"))
        if cod is not None and cod != was:
            if amount <= 0 and cod != "none":
                raise refused("cod", f"fulfilment {fid} has no COD to collect (cod_amount 0)")
            if was in facts.COD_COLLECTED and cod not in facts.COD_COLLECTED:
                raise refused("cod", f"the COD of fulfilment {fid} was already collected ({was})")
        ms = self.tick()
        stamp = render_time(ms, fid)
        before = order["financial_status"]
        if cod is not None and cod != was:
            if cod in facts.COD_COLLECTED and was not in facts.COD_COLLECTED:
                gateway = order.get("gateway") if order.get("gateway_code") == "COD" else facts.COD_GATEWAY
                self._capture(order, amount, gateway)
            fulfillment["carrier_cod_status_code"] = cod
            if facts.COD_STATUSES[cod]:
                fulfillment[facts.COD_STATUSES[cod]] = stamp
        if status is not None:
            name, date_field = facts.CARRIER_STATUSES[status]
            fulfillment["carrier_status_code"] = status
            fulfillment["carrier_status_name"] = name
            if date_field:
                fulfillment[date_field] = stamp
        fulfillment["updated_at"] = stamp
        self._saved_after_payment(order, before)
        return fulfillment

    # -- whole store ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "customers": list(self.customers.values()),
            "orders": [self.orders.get(oid) for oid in self.orders.ids],
            "products": [self.product_json(p) for p in self.products.values()],
            "locations": list(self.locations.values()),
            "inventory": [self.level_json(lv) for lv in self.inventory.values()],
            "adjustments": self.adjustments,
        }
