"""The Haravan sandbox's deterministic demo shop: customers, products, stock and orders.

Orders are described by a compact *plan* derived from (seed, index) alone, so 100,000 of them
cost a few megabytes: the store keeps each plan's summary (statuses, times) for filtering and
sorting, and builds the full order object from the plan only when a response needs it.

The first orders walk through every scenario in :data:`SCENARIOS` in turn, so even a small demo
holds every state that matters; later ones are drawn at random with fixed weights.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from hexaflow.connectors.sandbox_world import CATALOGUE, WAREHOUSES

CUSTOMER_ID_BASE = 1_036_847_000
GUEST_CUSTOMER_ID = 1_036_846_999
PRODUCT_ID_BASE = 1_028_183_000
VARIANT_ID_BASE = 1_061_514_000
# Above 2**32 like real staff ids, below 2**53 as measured ([EMP]): ids must survive as ints.
ORDER_ID_BASE = 1_300_000_000_000
STAFF_USER_ID = 200_000_497_867
SHOP_ORG_ID = 200_000_123_456
DEMO_CUSTOMERS = 40
GUEST_EMAIL = "guest@haravan.com"
# The customer fields an order embeds.
EMBEDDED_CUSTOMER_FIELDS = ("id", "email", "phone", "first_name", "last_name", "orders_count",
                            "total_spent", "state", "tags", "created_at", "updated_at")

# Demo orders end here, whatever their number, so the data never depends on today's date.
DEMO_END_MS = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp() * 1000)

COD = ("Thanh toán khi giao hàng (COD)", "COD")
CASH = ("Tiền mặt", "Custom")
BANK = ("Bank transfer", "")

# name: (financial_status as Haravan spells it, fulfillment_status, cancelled, gateway, source)
SCENARIOS: dict[str, tuple[str, str, bool, tuple[str, str], str]] = {
    "pending_cod": ("pending", "notfulfilled", False, COD, "web"),
    "paid_cash_pos": ("paid", "fulfilled", False, CASH, "pos"),
    "paid_bank": ("paid", "notfulfilled", False, BANK, "web"),
    "cod_delivered_unpaid": ("pending", "fulfilled", False, COD, "web"),
    "cod_delivered_paid": ("paid", "fulfilled", False, COD, "web"),
    "partially_paid": ("partiallypaid", "notfulfilled", False, BANK, "web"),
    "pos_no_customer": ("paid", "fulfilled", False, CASH, "pos"),
    "guest": ("pending", "notfulfilled", False, COD, "web"),
    "cancelled_unpaid": ("pending", "notfulfilled", True, COD, "web"),
    "cancelled_paid": ("refunded", "notfulfilled", True, BANK, "web"),
    "refund_restock": ("partially_refunded", "fulfilled", False, BANK, "web"),
}
SCENARIO_NAMES = tuple(SCENARIOS)
WEIGHTS = (22, 14, 12, 10, 12, 5, 8, 4, 5, 4, 4)

FIRST_NAMES = ("Lan", "Minh", "Hùng", "Thảo", "Tuấn", "Hà", "Phương", "Quang", "Mai", "Dũng")
LAST_NAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ", "Đặng", "Bùi")
PLACES = (("Hồ Chí Minh", "HC", "Quận 11", "HC476", "Phường 15", "27208"),
          ("Hà Nội", "HI", "Quận Ba Đình", "HI001", "Phường Phúc Xá", "00001"),
          ("Đà Nẵng", "DA", "Quận Hải Châu", "DA490", "Phường Hải Châu I", "20194"))


def render_time(ms: int, salt: int = 0) -> str:
    """ISO UTC with Z and 1-7 fractional digits, as Haravan varies them ([DOC-EX]); exact, since
    only zeros are added or dropped."""
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    digits = f"{ms % 1000:03d}".rstrip("0") or "0"
    digits += "0" * min(salt % 5, 7 - len(digits))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + digits + "Z"


def money(value: Decimal | int) -> float:
    """Amounts as Haravan writes them: JSON numbers like 880000.0."""
    return float(value)


def _address(place: tuple[str, ...], name: tuple[str, str], phone: str, upper_country: bool) -> dict:
    province, province_code, district, district_code, ward, ward_code = place
    return {"name": f"{name[1]} {name[0]}", "first_name": name[0], "last_name": name[1],
            "phone": phone, "address1": "182 Lê Đại Hành", "address2": None, "city": None,
            "company": None, "ward": ward, "ward_code": ward_code, "district": district,
            "district_code": district_code, "province": province, "province_code": province_code,
            "country": "Vietnam", "country_code": "VN" if upper_country else "vn", "zip": None}


def demo_customers(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"customers:{seed}")
    start = DEMO_END_MS - 400 * 86_400_000
    customers = []
    for k in range(DEMO_CUSTOMERS):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        cid = CUSTOMER_ID_BASE + k
        phone = f"09{seed % 10}{k:07d}"
        created = start + k * 3_600_000 + rng.randrange(1000)
        address = dict(_address(rng.choice(PLACES), (first, last), phone, False),
                       id=1_056_185_000 + k, default=True)
        customers.append({
            "id": cid, "email": f"khach{k}@example.com", "phone": phone,
            "first_name": first, "last_name": last, "gender": rng.choice((0, 1, None)),
            "birthday": None, "accepts_marketing": rng.random() < 0.5, "verified_email": True,
            "state": rng.choice(("Enabled", "Disabled")),   # capitalised, as in [DOC-EX]
            "tags": rng.choice((None, "VIP", "sỉ", "VIP,sỉ")), "note": None,
            "group_name": None, "multipass_identifier": None,
            "orders_count": 0, "total_spent": 0.0, "total_paid": 0.0,
            "last_order_id": None, "last_order_name": None, "last_order_date": None,
            "created_at": render_time(created, k), "updated_at": render_time(created + 1234, k + 1),
            "default_address": address, "addresses": [address]})
    guest_created = start - 86_400_000
    customers.append({
        "id": GUEST_CUSTOMER_ID, "email": GUEST_EMAIL, "phone": None, "first_name": "Khách",
        "last_name": "lẻ", "gender": None, "birthday": None, "accepts_marketing": False,
        "verified_email": False, "state": "Disabled", "tags": None, "note": None,
        "group_name": None, "multipass_identifier": None, "orders_count": 0, "total_spent": 0.0,
        "total_paid": 0.0, "last_order_id": None, "last_order_name": None,
        "last_order_date": None, "created_at": render_time(guest_created, 3),
        "updated_at": render_time(guest_created, 4), "default_address": None, "addresses": []})
    return customers


def demo_products(seed: int) -> tuple[list[dict[str, Any]], dict[tuple[int, int], int]]:
    """Products built from CATALOGUE (one product per title) and on-hand stock per
    (location_id, variant_id), each variant stocked in 2-3 locations."""
    rng = random.Random(f"products:{seed}")
    start = DEMO_END_MS - 500 * 86_400_000
    products: dict[str, dict[str, Any]] = {}
    stock: dict[tuple[int, int], int] = {}
    for n, item in enumerate(CATALOGUE):
        product = products.get(item.title)
        if product is None:
            pid = PRODUCT_ID_BASE + len(products)
            created = start + len(products) * 86_400_000
            product = products[item.title] = {
                "id": pid, "title": item.title, "handle": f"san-pham-{pid}", "body_html": "",
                "body_plain": None, "vendor": "Khác", "product_type": item.product_type,
                "tags": "", "published_at": render_time(created, 2), "published_scope": "global",
                "template_suffix": None, "only_hide_from_list": False,
                "not_allow_promotion": False, "images": [],
                "options": [{"name": "Title" if item.variant_title == "Default Title" else "Kích thước",
                             "position": 1}],
                "variants": [], "created_at": render_time(created, 1),
                "updated_at": render_time(created + 5_000, 6)}
        vid = VARIANT_ID_BASE + n
        product["variants"].append({
            "id": vid, "product_id": product["id"], "title": item.variant_title,
            "option1": item.variant_title, "option2": None, "option3": None,
            "sku": item.sku, "barcode": f"89345880{n:05d}", "price": money(item.price),
            "compare_at_price": 0.0, "grams": 300.0, "inventory_management": "haravan",
            "inventory_policy": "deny", "requires_shipping": True, "taxable": False,
            "position": len(product["variants"]) + 1,
            "created_at": product["created_at"], "updated_at": product["updated_at"]})
        for warehouse in rng.sample(WAREHOUSES, rng.choice((2, 3))):
            stock[(warehouse.location_id, vid)] = rng.randrange(20, 200)
    return list(products.values()), stock


@dataclass(frozen=True)
class OrderPlan:
    """Everything an order is derived from; cheap to make for 100,000 orders."""
    index: int
    id: int
    scenario: str
    customer: int | None         # index into the demo customers; -1 guest; None POS walk-in
    lines: tuple[tuple[int, int, int], ...]   # (catalogue index, quantity, promotion per unit)
    discount: int                # order-level code amount
    shipping: int
    location_id: int
    created_ms: int
    updated_ms: int

    @property
    def statuses(self) -> tuple[str, str, bool]:
        fin, ful, cancelled, _, _ = SCENARIOS[self.scenario]
        return fin, ful, cancelled

    @property
    def line_total(self) -> int:
        return sum((int(CATALOGUE[c].price) - promo) * qty for c, qty, promo in self.lines)

    @property
    def total(self) -> int:
        return self.line_total - self.discount + self.shipping


def plan_order(seed: int, index: int, count: int) -> OrderPlan:
    rng = random.Random(seed * 1_000_003 + index)
    if index < len(SCENARIO_NAMES):
        scenario = SCENARIO_NAMES[index]
    elif index == len(SCENARIO_NAMES):
        scenario = "paid_bank"          # with a discount code, below
    elif index == len(SCENARIO_NAMES) + 1:
        scenario = "pending_cod"        # with a line promotion, below
    else:
        scenario = rng.choices(SCENARIO_NAMES, WEIGHTS)[0]
    _, _, _, _, source = SCENARIOS[scenario]
    promote = rng.random() < 0.2 or index == len(SCENARIO_NAMES) + 1
    lines: list[tuple[int, int, int]] = []
    for c in rng.sample(range(len(CATALOGUE)), rng.choice((1, 1, 2, 2, 3))):
        price = int(CATALOGUE[c].price)
        promo = (price // 10 // 1000) * 1000 if promote and not lines else 0
        lines.append((c, rng.choice((1, 1, 1, 2, 3)), promo))
    line_total = sum((int(CATALOGUE[c].price) - p) * q for c, q, p in lines)
    discount = 0
    if rng.random() < 0.2 or index == len(SCENARIO_NAMES):
        discount = min(50_000, line_total // 2)
    shipping = 0 if source == "pos" else rng.choice((0, 20_000, 30_000, 30_000))
    if scenario == "pos_no_customer":
        customer = None
    elif scenario == "guest":
        customer = -1
    else:
        customer = rng.randrange(DEMO_CUSTOMERS)
    # Spread the orders over the year before DEMO_END, oldest first.
    step = max(1, min(600_000, 365 * 86_400_000 // max(count, 1)))
    created = DEMO_END_MS - (count - index) * step + rng.randrange(step // 2 + 1)
    updated = created + (rng.randrange(60_000, 86_400_000)
                         if SCENARIOS[scenario][1] != "notfulfilled" or SCENARIOS[scenario][2]
                         else rng.randrange(1_000, 60_000))
    return OrderPlan(index=index, id=ORDER_ID_BASE + index, scenario=scenario, customer=customer,
                     lines=tuple(lines), discount=discount, shipping=shipping,
                     location_id=rng.choice(WAREHOUSES).location_id, created_ms=created,
                     updated_ms=updated)


def build_order(plan: OrderPlan, customers: list[dict[str, Any]],
                variants: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """The full order object of ``plan`` the way GET /orders/{id}.json shows it.

    ``variants``: SKU -> (product_id, variant_id) of the demo products."""
    fin, ful, cancelled, (gateway, gateway_code), source = SCENARIOS[plan.scenario]
    oid = plan.id
    number = f"#{100001 + plan.index}"
    created = render_time(plan.created_ms, plan.index)
    updated = render_time(plan.updated_ms, plan.index + 2)
    location_name = next(w.location_name for w in WAREHOUSES if w.location_id == plan.location_id)
    fulfilled = ful == "fulfilled"
    line_items: list[dict[str, Any]] = []
    for k, (c, qty, promo) in enumerate(plan.lines):
        item = CATALOGUE[c]
        product_id, variant_id = variants[item.sku]
        price = int(item.price) - promo
        line_items.append({
            "id": oid * 100 + k, "product_id": product_id, "variant_id": variant_id,
            "sku": item.sku, "barcode": None, "title": item.title,
            "variant_title": item.variant_title,
            "name": (item.title if item.variant_title == "Default Title"
                     else f"{item.title} - {item.variant_title}"),
            "vendor": "Khác", "type": item.product_type, "quantity": qty,
            "price": money(price), "price_original": money(item.price), "price_promotion": 0.0,
            # Per unit, as the documentation's create example shows ([DOC-EX]).
            "total_discount": money(promo),
            "applied_discounts": ([{"description": "Khuyến mãi tháng 6", "amount": money(promo)}]
                                  if promo else []),
            "properties": [{"name": "Khuyến mãi", "value": "1017934710 - KM-THANG6"}] if promo else None,
            "fulfillable_quantity": 0 if fulfilled or cancelled else qty,
            "fulfillment_status": "fulfilled" if fulfilled else "notfulfilled",
            "grams": 300.0, "requires_shipping": True, "taxable": False, "tax_lines": [],
            "gift_card": False, "product_exists": True, "not_allow_promotion": False,
            "ma_cost_amount": money(item.cost), "image": None})
    total = plan.total
    if plan.customer is None:
        customer = None
        email = None
    else:
        source_customer = customers[-1] if plan.customer == -1 else customers[plan.customer]
        customer = {key: source_customer[key] for key in EMBEDDED_CUSTOMER_FIELDS}
        email = source_customer["email"]
    tx_base = oid * 100 + 50
    transactions = [{
        "id": tx_base, "order_id": oid, "kind": "pending", "amount": money(total),
        "status": None, "gateway": gateway, "currency": "VND", "parent_id": None,
        "location_id": plan.location_id, "user_id": 0, "is_cod_gateway": gateway_code == "COD",
        "test": False, "external_transaction_id": None, "created_at": created}]
    paid = 0
    if fin in ("paid", "refunded", "partially_refunded"):
        paid = total
    elif fin == "partiallypaid":
        paid = (total // 2 // 1000) * 1000
    if paid:
        transactions.append({
            **transactions[0], "id": tx_base + 1, "kind": "capture", "amount": money(paid),
            "status": "success", "parent_id": tx_base, "user_id": STAFF_USER_ID,
            "created_at": render_time(plan.created_ms + 30_000, plan.index + 1)})
    refunds = []
    if fin in ("refunded", "partially_refunded"):
        if fin == "refunded":
            refund_lines, amount, restock = [], total, False
        else:
            first = line_items[0]
            refund_lines = [{"id": oid * 100 + 95, "line_item_id": first["id"],
                             "quantity": first["quantity"], "line_item": dict(first)}]
            amount, restock = min(total, int(first["price"]) * first["quantity"]), True
            first["fulfillment_status"] = "restock"
            if len(line_items) == 1:
                ful = "restocked"
        refund_tx = {**transactions[0], "id": tx_base + 2, "kind": "refund",
                     "amount": money(-amount), "status": "success", "parent_id": tx_base + 1,
                     "user_id": STAFF_USER_ID,
                     "created_at": render_time(plan.updated_ms, plan.index)}
        transactions.append(refund_tx)
        refunds.append({"id": oid * 100 + 96, "order_id": oid, "created_at": refund_tx["created_at"],
                        "note": "Khách trả hàng" if restock else "Hoàn tiền khi hủy đơn",
                        "restock": restock, "user_id": STAFF_USER_ID,
                        "location_id": plan.location_id if restock else None,
                        "refund_line_items": refund_lines, "transactions": [refund_tx]})
    fulfillments = []
    if fulfilled:
        unpaid_cod = gateway_code == "COD" and not paid
        fulfillments.append({
            "id": oid * 100 + 90, "order_id": oid, "status": "success",
            "location_id": plan.location_id, "tracking_company": "Giao hàng tiết kiệm",
            "tracking_number": f"S{oid % 10_000_000}", "tracking_numbers": [f"S{oid % 10_000_000}"],
            "tracking_url": None, "tracking_urls": [], "cod_amount": money(total if unpaid_cod else 0),
            "carrier_status_code": "delivered",
            "carrier_cod_status_code": "codpending" if unpaid_cod else "none",
            "created_at": render_time(plan.created_ms + 3_600_000, plan.index),
            "updated_at": updated,
            "line_items": [{"id": li["id"], "variant_id": li["variant_id"], "sku": li["sku"],
                            "quantity": li["quantity"]} for li in line_items]})
    address = None
    # (customer is None exactly when plan.customer is: a POS walk-in)
    if customer is not None and plan.customer is not None and customer["email"] != GUEST_EMAIL:
        src = customers[plan.customer]
        address = (src["default_address"] or {}) and {
            k: v for k, v in src["default_address"].items() if k not in ("id", "default")}
        if address:
            address = dict(address, country_code="VN")
    return {
        "id": oid, "order_number": number, "name": number, "number": oid, "token": f"t{oid:x}",
        "created_at": created, "updated_at": updated, "processed_at": created,
        "confirmed_at": render_time(plan.created_ms + 60_000, plan.index + 3),
        "closed_at": None, "cancelled_at": render_time(plan.updated_ms, plan.index) if cancelled else None,
        "currency": "VND", "email": email, "contact_email": email, "phone": None,
        "source_name": source, "source": source, "gateway": gateway, "gateway_code": gateway_code,
        "processing_method": None, "financial_status": fin, "fulfillment_status": ful,
        "cancelled_status": "cancelled" if cancelled else "uncancelled",
        "confirmed_status": "confirmed", "closed_status": "unclosed",
        "cancel_reason": ("customer" if fin == "pending" else "other") if cancelled else None,
        "order_processing_status": "confirmed", "omni_order_status": 0,
        "omni_order_status_name": None,
        "location_id": plan.location_id, "location_name": location_name,
        "assigned_location_id": plan.location_id, "assigned_location_name": location_name,
        "user_id": STAFF_USER_ID if source == "pos" else 0, "confirm_user": STAFF_USER_ID,
        "note": None, "note_attributes": [], "tags": source,
        "discount_codes": [{"code": "HE2024", "amount": money(plan.discount),
                            "type": "fixed_amount", "is_coupon_code": True}] if plan.discount else [],
        "total_line_items_price": money(plan.line_total),
        "subtotal_price": money(plan.line_total),     # discount not subtracted ([DOC-EX])
        "total_discounts": money(plan.discount), "total_tax": 0.0, "tax_lines": [],
        "taxes_included": False, "total_price": money(total), "total_weight": 0.0,
        "shipping_lines": [{"code": "GHTK", "title": "Giao hàng tiết kiệm",
                            "price": money(plan.shipping), "source": None}] if plan.shipping else [],
        "line_items": line_items, "customer": customer,
        "shipping_address": address, "billing_address": address,
        "transactions": transactions, "fulfillments": fulfillments, "refunds": refunds,
        "ref_order_id": 0, "ref_order_number": None, "prev_order_id": 0,
        "prev_order_number": None,
    }
