"""The sandbox behaves as the reference describes: wrappers, codes, cancel, refunds, stock."""
from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal

from hexaflow.connectors.haravan.demo_data import SCENARIOS
from hexaflow.connectors.sandbox_world import WAREHOUSES
from hexaflow.timeutil import parse_datetime


def _order(shop, scenario_index: int) -> dict:
    return shop.state()["orders"][scenario_index]     # the first orders walk the scenarios


def _level(shop, loc, vid) -> dict:
    levels = shop.api("GET", "/inventory_locations.json",
                      params={"location_ids": loc, "variant_ids": vid}).json()["inventory_locations"]
    return levels[0] if levels else {"qty_onhand": 0, "qty_available": 0, "qty_commited": 0}


def test_empty_shop_holds_only_the_locations(make_shop):
    state = make_shop(data="empty").state()
    assert {loc["id"] for loc in state["locations"]} == {w.location_id for w in WAREHOUSES}
    assert state["customers"] == state["orders"] == state["products"] == state["inventory"] == []


def test_reset_switches_between_empty_and_demo(shop):
    assert shop.admin("POST", "/reset").json()["orders"] == 0
    assert shop.state()["orders"] == []
    assert shop.admin("POST", "/reset", json={"data": "demo"}).json()["orders"] == 60


def test_demo_covers_every_state_and_totals_add_up(make_shop):
    state = make_shop(orders=300).state()
    orders = state["orders"]
    statuses = Counter((o["financial_status"], o["fulfillment_status"], o["cancelled_status"]) for o in orders)
    assert ("partiallypaid", "notfulfilled", "uncancelled") in statuses
    assert any(s[2] == "cancelled" and s[0] == "refunded" for s in statuses)
    assert any(s[2] == "cancelled" and s[0] == "pending" for s in statuses)
    gateways = {o["gateway"] for o in orders}
    assert {"Tiền mặt", "Bank transfer", "Thanh toán khi giao hàng (COD)"} <= gateways
    assert any(o["discount_codes"] for o in orders)
    assert any(li["applied_discounts"] for o in orders for li in o["line_items"])
    assert any(o["shipping_lines"] for o in orders)
    assert any(o["customer"] is None and o["source_name"] == "pos" for o in orders)
    assert any((o["customer"] or {}).get("email") == "guest@haravan.com" for o in orders)
    assert any(r["restock"] and r["refund_line_items"] for o in orders for r in o["refunds"])
    for o in orders:
        d = lambda v: Decimal(str(v))  # noqa: E731
        lines = sum(d(li["price"]) * li["quantity"] for li in o["line_items"])
        assert d(o["total_price"]) == lines - d(o["total_discounts"]) + \
            sum(d(s["price"]) for s in o["shipping_lines"]) + d(o["total_tax"])
    # Products are stocked in 2-3 locations each.
    per_variant = Counter(lv["variant_id"] for lv in state["inventory"])
    assert set(per_variant.values()) <= {2, 3}
    assert len(state["products"]) == 8


def test_wrappers_status_codes_and_page_cap(shop):
    r = shop.api("GET", "/orders.json", params={"status": "any", "limit": 250})
    assert r.status_code == 200 and len(r.json()["orders"]) == 50
    assert r.headers["X-Haravan-Api-Call-Limit"].endswith("/80")
    assert shop.api("GET", "/orders/count.json", params={"status": "any"}).json() == {"count": 60}
    created = shop.api("POST", "/customers.json", json={"customer": {"first_name": "Hoa", "email": "hoa@example.com"}})
    assert created.status_code == 201 and created.json()["customer"]["id"]
    dup = shop.api("POST", "/customers.json", json={"customer": {"email": "hoa@example.com"}})
    assert dup.status_code == 422
    assert shop.api("GET", "/orders/1.json").status_code == 404
    assert shop.http.get("/com/orders.json", headers={"Authorization": "Bearer nope"}).status_code == 401
    products = shop.api("GET", "/products.json").json()["products"]
    assert [p["id"] for p in products] == sorted((p["id"] for p in products), reverse=True)
    assert len(shop.api("GET", "/products.json", params={"sku": ""}).json()["products"]) == 8


def test_rate_limit_switch(make_shop):
    shop = make_shop(data="empty", rate_limit=True, bucket_size=5, leak_rate=1.0)
    codes = [shop.api("GET", "/locations.json").status_code for _ in range(7)]
    assert codes.count(429) >= 1
    limited = next(r for r in [shop.api("GET", "/locations.json")] if r.status_code == 429)
    assert float(limited.headers["Retry-After"]) > 0
    shop.admin("POST", "/faults", json={"rate_limit": False})
    assert all(shop.api("GET", "/locations.json").status_code == 200 for _ in range(10))


def test_cancel_paid_fulfilled_order_with_restock_and_refund(shop):
    order = _order(shop, list(SCENARIOS).index("paid_cash_pos"))
    line = order["line_items"][0]
    before = _level(shop, order["location_id"], line["variant_id"])["qty_onhand"]
    r = shop.api("POST", f"/orders/{order['id']}/cancel.json",
                 json={"reason": "customer", "restock": True, "amount": str(order["total_price"])})
    assert r.status_code == 200
    cancelled = r.json()["order"]
    assert cancelled["cancelled_status"] == "cancelled" and cancelled["cancelled_at"]
    assert cancelled["cancel_reason"] == "customer"
    assert cancelled["financial_status"] == "refunded"
    refund_tx = [t for t in cancelled["transactions"] if t["kind"] == "refund"]
    assert refund_tx and refund_tx[0]["amount"] == -order["total_price"]
    assert cancelled["refunds"][0]["restock"] is True
    assert parse_datetime(cancelled["updated_at"]) > parse_datetime(order["updated_at"])
    after = _level(shop, order["location_id"], line["variant_id"])["qty_onhand"]
    assert after == before + line["quantity"]
    assert shop.api("POST", f"/orders/{order['id']}/cancel.json", json={}).status_code == 422


def test_cancel_unpaid_order_with_amount_only(shop):
    order = _order(shop, list(SCENARIOS).index("pending_cod"))
    r = shop.api("POST", f"/orders/{order['id']}/cancel.json", json={})
    body = r.json()["order"]
    assert body["cancelled_status"] == "cancelled" and body["cancel_reason"] == "other"
    assert body["financial_status"] == "pending" and body["refunds"] == []


def test_partial_refund_with_restock(shop):
    order = _order(shop, list(SCENARIOS).index("cod_delivered_paid"))
    line = order["line_items"][0]
    before = _level(shop, order["location_id"], line["variant_id"])["qty_onhand"]
    r = shop.api("POST", f"/orders/{order['id']}/refunds.json", json={"refund": {
        "restock": True, "note": "trả hàng",
        "refund_line_items": [{"line_item_id": line["id"], "quantity": 1}],
        "transactions": [{"amount": line["price"], "kind": "refund"}]}})
    assert r.status_code == 201
    refund = r.json()["refund"]
    assert refund["refund_line_items"][0]["line_item"]["sku"] == line["sku"]
    refreshed = shop.api("GET", f"/orders/{order['id']}.json").json()["order"]
    assert refreshed["financial_status"] == "partially_refunded"
    assert refreshed["line_items"][0]["fulfillment_status"] == "restock"
    assert _level(shop, order["location_id"], line["variant_id"])["qty_onhand"] == before + 1
    assert shop.api("GET", f"/orders/{order['id']}/refunds.json").json()["refunds"][-1]["id"] == refund["id"]
    too_much = shop.api("POST", f"/orders/{order['id']}/refunds.json", json={"refund": {
        "transactions": [{"amount": order["total_price"], "kind": "refund"}]}})
    assert too_much.status_code == 422


def test_capture_transaction_marks_paid(shop):
    order = _order(shop, list(SCENARIOS).index("partially_paid"))
    assert order["financial_status"] == "partiallypaid"
    paid = sum(t["amount"] for t in order["transactions"] if t["kind"] == "capture")
    r = shop.api("POST", f"/orders/{order['id']}/transactions.json",
                 json={"transaction": {"kind": "Capture", "amount": order["total_price"] - paid}})
    assert r.status_code == 201 and r.json()["transaction"]["kind"] == "Capture"
    listed = shop.api("GET", f"/orders/{order['id']}/transactions.json").json()["transactions"]
    assert {t["kind"] for t in listed} >= {"Pending", "Capture"}
    assert shop.api("GET", f"/orders/{order['id']}.json").json()["order"]["financial_status"] == "paid"


def test_admin_pay_and_fulfill_move_the_order_along(shop):
    order = _order(shop, list(SCENARIOS).index("pending_cod"))
    paid = shop.admin("POST", f"/orders/{order['id']}/pay", json={"gateway": "Tiền mặt"}).json()["order"]
    assert paid["financial_status"] == "paid" and paid["updated_at"] != order["updated_at"]
    assert paid["transactions"][-1]["kind"] == "capture" and paid["transactions"][-1]["gateway"] == "Tiền mặt"
    line = order["line_items"][0]
    loc = WAREHOUSES[1].location_id
    before = _level(shop, loc, line["variant_id"])["qty_onhand"]
    done = shop.admin("POST", f"/orders/{order['id']}/fulfill", json={"location_id": loc}).json()["order"]
    assert done["fulfillment_status"] == "fulfilled" and done["fulfillments"][0]["location_id"] == loc
    assert _level(shop, loc, line["variant_id"])["qty_onhand"] == before - line["quantity"]
    stamps = [order["updated_at"], paid["updated_at"], done["updated_at"]]
    assert [parse_datetime(s) for s in stamps] == sorted(parse_datetime(s) for s in stamps)


def test_adjustorset_set_and_adjust(shop):
    product = shop.api("GET", "/products.json", params={"sku": "AO-THUN-M"}).json()["products"][0]
    variant = next(v for v in product["variants"] if v["sku"] == "AO-THUN-M")
    loc = WAREHOUSES[2].location_id

    def post(kind, qty):
        return shop.api("POST", "/inventories/adjustorset.json", json={"inventory": {
            "location_id": loc, "type": kind, "reason": "newproduct", "note": "sync from MISA",
            "line_items": [{"product_id": product["id"], "product_variant_id": variant["id"], "quantity": qty}]}})
    assert post("set", 17).status_code == 201
    assert _level(shop, loc, variant["id"])["qty_onhand"] == 17      # set overwrites on-hand
    assert post("adjust", -5).status_code == 201
    level = _level(shop, loc, variant["id"])
    assert level["qty_onhand"] == 12 and level["qty_available"] == 12 - level["qty_commited"]
    bad = shop.api("POST", "/inventories/adjustorset.json", json={"inventory": {
        "location_id": loc, "type": "set", "line_items": [{"product_variant_id": 1, "quantity": 1}]}})
    assert bad.status_code == 422
    unwrapped = shop.api("POST", "/inventories/adjustorset.json", json={"location_id": loc, "type": "set"})
    assert unwrapped.status_code == 400


def test_100k_orders_answer_quickly(make_shop):
    shop = make_shop(orders=100_000)
    for params in ({"status": "any", "order": "updated_at asc", "page": 1900},
                   {"status": "cancelled", "page": 5},
                   {"status": "any", "updated_at_min": "2026-10-20T00:00:00Z", "order": "updated_at asc"}):
        started = time.monotonic()
        r = shop.api("GET", "/orders.json", params=params)
        assert r.status_code == 200 and len(r.json()["orders"]) == 50
        assert time.monotonic() - started < 0.5
