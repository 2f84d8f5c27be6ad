"""Writing products (upsert by SKU) and stock (adjustorset batches) to the sandbox."""
from __future__ import annotations

import pytest

from hexaflow.connector import DONE, FAILED, REJECTED, WriteItem
from hexaflow.http import RetriesExhausted
from hexaflow.connectors.sandbox_world import WAREHOUSES


def _product(sku: str, title: str, price: int) -> WriteItem:
    return WriteItem(ref=f"p-{sku}-{price}", document="product", action="upsert", key=sku, payload={
        "title": title, "product_type": "Áo", "vendor": "Hexa",
        "variants": [{"sku": sku, "price": price, "inventory_management": "haravan", "option1": "M"}]})


def _skus_sent(shop) -> list[str]:
    return [q["sku"] for m, p, q in shop.app.requests if p == "/com/products.json" and "sku" in q]


def test_product_upsert_creates_then_updates_without_duplicates(make_shop):
    shop = make_shop(data="empty")
    with shop.connector() as connector:
        [first] = connector.write([_product("SP-001", "Áo sơ mi", 300000)])
        assert first.status == DONE and first.target_ref
        assert connector.exists("product", "SP-001") is True
        [second] = connector.write([_product("SP-001", "Áo sơ mi trắng", 320000)])
    assert second.status == DONE and second.target_ref == first.target_ref
    products = shop.state()["products"]
    assert len(products) == 1
    assert products[0]["title"] == "Áo sơ mi trắng"
    assert [(v["sku"], v["price"]) for v in products[0]["variants"]] == [("SP-001", 320000.0)]
    assert "" not in _skus_sent(shop)


def test_product_without_sku_is_rejected_without_asking_haravan(make_shop):
    shop = make_shop(data="empty")
    item = WriteItem(ref="x", document="product", action="upsert", key="",
                     payload={"title": "No SKU", "variants": [{"sku": "", "price": 1}]})
    with shop.connector() as connector:
        [result] = connector.write([item])
        assert connector.exists("product", "") is None
    assert result.status == REJECTED and "SKU" in result.message
    assert _skus_sent(shop) == [] and shop.state()["products"] == []


def test_product_validation_error_is_rejected_per_item(make_shop):
    shop = make_shop(data="empty")
    bad = WriteItem(ref="bad", document="product", action="upsert", key="SP-X",
                    payload={"title": "", "variants": [{"sku": "SP-X"}]})
    with shop.connector() as connector:
        results = {r.ref: r for r in connector.write([bad, _product("SP-Y", "Ok", 1000)])}
    assert results["bad"].status == REJECTED and results["bad"].code == "422"
    assert results["p-SP-Y-1000"].status == DONE


def test_stock_set_and_adjust_in_batches_per_location(shop):
    skus = [v["sku"] for p in shop.state()["products"] for v in p["variants"]]
    hcm, hn = WAREHOUSES[0].location_id, WAREHOUSES[1].location_id
    items = []
    # 14 SKUs x 8 repeats at HCM = 112 lines: two calls (<= 100 lines each).
    for n in range(8):
        for sku in skus:
            items.append(WriteItem(ref=f"s{n}-{sku}", document="inventory", action="upsert", key=sku,
                                   payload={"location_id": hcm, "sku": sku, "quantity": 40, "type": "set"}))
    items.append(WriteItem(ref="adj", document="inventory", action="upsert", key="AO-THUN-M",
                           payload={"location_id": hn, "sku": "AO-THUN-M", "quantity": 3, "type": "adjust"}))
    items.append(WriteItem(ref="ghost", document="inventory", action="upsert", key="NOPE",
                           payload={"location_id": hn, "sku": "NOPE", "quantity": 3}))
    before = {(lv["loc_id"], lv["variant_id"]): lv["qty_onhand"] for lv in shop.state()["inventory"]}
    with shop.connector() as connector:
        results = {r.ref: r for r in connector.write(items)}
    assert len(results) == len(items)
    assert results["ghost"].status == REJECTED and "NOPE" in results["ghost"].message
    assert all(r.status == DONE for ref, r in results.items() if ref != "ghost")
    state = shop.state()
    assert [len(a["line_items"]) for a in state["adjustments"] if a["location_id"] == hcm] == [100, len(skus) * 8 - 100]
    variant_of = {v["sku"]: v["id"] for p in state["products"] for v in p["variants"]}
    levels = {(lv["loc_id"], lv["variant_id"]): lv for lv in state["inventory"]}
    assert all(levels[(hcm, variant_of[sku])]["qty_onhand"] == 40 for sku in skus)
    adjusted = levels[(hn, variant_of["AO-THUN-M"])]["qty_onhand"]
    assert adjusted == before.get((hn, variant_of["AO-THUN-M"]), 0) + 3
    assert results["adj"].target_ref == str(variant_of["AO-THUN-M"])
    assert "" not in _skus_sent(shop)


def test_one_bad_stock_line_does_not_sink_its_batch(make_shop):
    shop = make_shop()
    good = WriteItem(ref="good", document="inventory", action="upsert", key="VO-COTTON-Đen",
                     payload={"location_id": 963414, "sku": "VO-COTTON-Đen", "quantity": 5})
    wrong_location = WriteItem(ref="bad", document="inventory", action="upsert", key="HOP-QUA",
                               payload={"location_id": 1, "sku": "HOP-QUA", "quantity": 5})
    fractional = WriteItem(ref="half", document="inventory", action="upsert", key="HOP-QUA",
                           payload={"location_id": 963414, "sku": "HOP-QUA", "quantity": "1.5"})
    with shop.connector() as connector:
        results = {r.ref: r for r in connector.write([good, wrong_location, fractional])}
    assert results["good"].status == DONE
    assert results["bad"].status == REJECTED and results["bad"].code == "422"
    assert results["half"].status == REJECTED


def test_upsert_adds_a_variant_and_keeps_the_others(shop):
    item = WriteItem(ref="v", document="product", action="upsert", key="AO-THUN-XL", payload={
        "title": "Áo thun cotton", "variants": [{"sku": "AO-THUN-XL", "price": 260000, "option1": "XL"},
                                                 {"sku": "AO-THUN-M", "price": 255000, "option1": "M"}]})
    with shop.connector() as connector:
        [result] = connector.write([item])
    assert result.status == DONE
    product = next(p for p in shop.state()["products"] if str(p["id"]) == result.target_ref)
    prices = {v["sku"]: v["price"] for v in product["variants"]}
    assert prices == {"AO-THUN-S": 250000.0, "AO-THUN-M": 255000.0, "AO-THUN-L": 250000.0,
                      "AO-THUN-XL": 260000.0}


def test_product_upserts_under_server_errors_never_duplicate(make_shop):
    shop = make_shop(data="empty")
    items = [_product(f"SP-{n:03d}", f"Sản phẩm {n}", 1000 * (n + 1)) for n in range(10)]
    shop.admin("POST", "/faults", json={"error_rate": 0.3, "kinds": ["500", "502"], "seed": 5})
    with shop.connector(HARAVAN_MAX_ATTEMPTS="3") as connector:
        first = connector.write(items)
        assert {r.status for r in first} <= {DONE, FAILED}
        shop.admin("POST", "/faults", json={})
        second = connector.write(items)
    assert all(r.status == DONE for r in second)
    skus = [v["sku"] for p in shop.state()["products"] for v in p["variants"]]
    assert sorted(skus) == [f"SP-{n:03d}" for n in range(10)]


def test_a_create_answered_500_is_not_sent_twice(make_shop):
    shop = make_shop(data="empty")
    shop.admin("POST", "/faults", json={"error_rate": 1.0, "kinds": ["500"]})
    body = {"customer": {"first_name": "A"}}
    with shop.connector(HARAVAN_MAX_ATTEMPTS="3") as connector:
        status, _ = connector.client.request("POST", "/customers.json", scope="com.write_customers",
                                             body=body, idempotent=False)
        assert status == 500 and len(shop.app.requests) == 1
        # A 503 is a refusal, so even a create is sent again (here until attempts run out).
        shop.admin("POST", "/faults", json={"error_rate": 1.0, "kinds": ["503"]})
        with pytest.raises(RetriesExhausted):
            connector.client.request("POST", "/customers.json", scope="com.write_customers",
                                     body=body, idempotent=False)
    assert len(shop.app.requests) == 1 + 3
