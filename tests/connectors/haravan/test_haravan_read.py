"""Reading: pagination under the 50 cap, incremental reads, normalised records."""
from __future__ import annotations

from decimal import Decimal



def test_reads_500_orders_in_pages_capped_at_50(make_shop, read_all):
    shop = make_shop(orders=500)
    # Ask for 250 a page: the sandbox caps at 50 silently, as Haravan does; the connector learns it.
    with shop.connector(HARAVAN_PAGE_SIZE="250") as connector:
        pages, orders = read_all(connector, "orders")
    # Every request after the first restarts at the last stamp seen (so records changing during
    # the read cannot shift past a page boundary); the one re-read record is dropped.
    assert len(pages[0].records) == 50 and all(len(p.records) <= 50 for p in pages)
    ids = [o["id"] for o in orders]
    assert len(ids) == len(set(ids)) == 500
    assert set(ids) == {o["id"] for o in shop.state()["orders"]}
    sent = [q for m, p, q in shop.app.requests if p == "/com/orders.json"]
    assert all(q["status"] == "any" and q["order"] == "updated_at asc" for q in sent)
    assert len(sent) <= 12
    # Each page's cursor is the newest stamp on it, and cursors only move forward.
    cursors = [p.cursor for p in pages]
    assert cursors == sorted(cursors)
    assert cursors[-1] == max(o["updated_at"] for o in orders)


def test_incremental_read_returns_only_orders_changed_since_the_cursor(make_shop, read_all):
    shop = make_shop(orders=120)
    with shop.connector(HARAVAN_OVERLAP_SECONDS="0") as connector:
        pages, _ = read_all(connector, "orders")
        cursor = pages[-1].cursor
        ids = [o["id"] for o in shop.state()["orders"]]
        paid, cancelled = ids[0], ids[7]          # pending COD; a later order
        assert shop.admin("POST", f"/orders/{paid}/pay").status_code == 200
        assert shop.api("POST", f"/orders/{cancelled}/cancel.json", json={"reason": "customer"}).status_code == 200
        pages, changed = read_all(connector, "orders", since=cursor)
        assert sorted(o["id"] for o in changed) == sorted([paid, cancelled])
        assert {o["id"]: o["financial_status"] for o in changed}[paid] == "paid"
        # A rerun from the new cursor with nothing changed reads nothing.
        assert read_all(connector, "orders", since=pages[-1].cursor)[1] == []


def test_default_overlap_rereads_only_versions_already_seen(shop, read_all):
    with shop.connector() as connector:        # overlap: 300 s
        pages, first = read_all(connector, "orders")
        seen = {(o["id"], o["updated_at"]) for o in first}
        _, again = read_all(connector, "orders", since=pages[-1].cursor)
    assert again and all((o["id"], o["updated_at"]) in seen for o in again)
    sent = [q for m, p, q in shop.app.requests if p == "/com/orders.json"][-1]
    assert sent["updated_at_min"] < pages[-1].cursor


def test_orders_are_normalised(shop, read_all):
    with shop.connector() as connector:
        _, orders = read_all(connector, "orders")
    by_status = {o["financial_status"] for o in orders}
    assert "partially_paid" in by_status and "partiallypaid" not in by_status
    assert all(o["fulfillment_status"] != "notfulfilled" for o in orders)
    assert any(o["fulfillment_status"] is None for o in orders)
    for order in orders:
        assert isinstance(order["total_price"], Decimal)
        assert isinstance(order["id"], int) and order["id"] > 2**32
        assert order["updated_at"].endswith("Z") and len(order["updated_at"]) == 27
        lines = sum((li["price"] * li["quantity"] for li in order["line_items"]), Decimal(0))
        shipping = sum((s["price"] for s in order["shipping_lines"]), Decimal(0))
        assert order["total_price"] == lines - order["total_discounts"] + shipping + order["total_tax"]
        for tx in order["transactions"]:
            assert tx["kind"] == tx["kind"].lower() and isinstance(tx["amount"], Decimal)
        if order["customer"]:
            assert order["customer"]["state"] in ("enabled", "disabled")
    assert any(o["customer"] is None and o["source_name"] == "pos" for o in orders)
    assert any((o["customer"] or {}).get("email") == "guest@haravan.com" for o in orders)


def test_customers_products_locations_and_stock_are_readable(shop, read_all):
    with shop.connector() as connector:
        pages, customers = read_all(connector, "customers")
        assert len(customers) == 41 and customers[0]["state"] in ("enabled", "disabled")
        # An unsorted list moves the cursor only on its last page.
        assert pages[-1].cursor == max(c["updated_at"] for c in customers)
        _, products = read_all(connector, "products")
        assert {v["sku"] for p in products for v in p["variants"]} >= {"AO-THUN-M", "TUI-XACH"}
        _, locations = read_all(connector, "locations")
        assert {loc["id"] for loc in locations} == {963414, 963415, 963416}
        _, levels = read_all(connector, "inventory_locations", {"location_ids": "963414"})
        assert levels and all(lv["loc_id"] == 963414 for lv in levels)
        assert all(lv["qty_available"] == lv["qty_onhand"] - lv["qty_commited"] for lv in levels)


def test_customer_changes_are_read_incrementally(shop, read_all):
    with shop.connector(HARAVAN_OVERLAP_SECONDS="0") as connector:
        pages, _ = read_all(connector, "customers")
        created = shop.api("POST", "/customers.json", json={"customer": {
            "first_name": "Bình", "last_name": "Trần", "email": "binh@example.com"}})
        assert created.status_code == 201
        _, changed = read_all(connector, "customers", since=pages[-1].cursor)
    assert [c["email"] for c in changed] == ["binh@example.com"]
