"""Every fact of an order's life, played by the sandbox over loopback HTTP: partial shipments,
captures by gateway, COD through the carrier, refunds of every kind, cancellations, tax."""
from __future__ import annotations

from decimal import Decimal

import pytest

from hexaflow.connectors.haravan.demo_data import SCENARIOS
from hexaflow.connectors.sandbox_world import WAREHOUSES

COD = {"gateway": "Thanh toán khi giao hàng (COD)", "gateway_code": "COD"}
BANK = {"gateway": "Bank transfer", "gateway_code": ""}
HCM = WAREHOUSES[0].location_id
OTHER = WAREHOUSES[1].location_id


@pytest.fixture
def shop(make_shop):
    return make_shop(orders=12)


def _order(shop, oid: int) -> dict:
    answer = shop.api("GET", f"/orders/{oid}.json")
    assert answer.status_code == 200, answer.text
    return answer.json()["order"]


def _create(shop, lines, **fields) -> dict:
    body = {"line_items": [{"sku": sku, "quantity": qty, **({"price": price} if price else {})}
                           for sku, qty, price in lines], "location_id": HCM, **fields}
    answer = shop.api("POST", "/orders.json", json={"order": body})
    assert answer.status_code == 201, answer.text
    return answer.json()["order"]


def _onhand(shop, loc: int, vid: int) -> int:
    levels = shop.api("GET", "/inventory_locations.json",
                      params={"location_ids": loc, "variant_ids": vid}).json()["inventory_locations"]
    return levels[0]["qty_onhand"] if levels else 0


def _ship(shop, oid: int, **fulfillment):
    return shop.api("POST", f"/orders/{oid}/fulfillments.json", json={"fulfillment": fulfillment})


def _pay(shop, oid: int, **body):
    return shop.admin("POST", f"/orders/{oid}/pay", json=body)


def _carrier(shop, oid: int, fid: int, **body):
    return shop.admin("POST", f"/orders/{oid}/fulfillments/{fid}/carrier", json=body)


def _refund(shop, oid: int, **refund):
    return shop.api("POST", f"/orders/{oid}/refunds.json", json={"refund": refund})


def _money(order: dict, kind: str) -> list[tuple[Decimal, str, bool]]:
    return [(Decimal(str(t["amount"])), t["gateway"], t["is_cod_gateway"])
            for t in order["transactions"] if t["kind"] == kind]


# -- 1. partial fulfilments -------------------------------------------------------------------
def test_partial_fulfilments_ship_what_is_asked_and_the_rest_later(shop):
    order = _create(shop, [("AO-THUN-M", 3, None), ("MU-LUOI-TRAI", 1, None)], **BANK)
    shirt, cap = order["line_items"]
    shirts_hcm = _onhand(shop, HCM, shirt["variant_id"])
    shirts_other = _onhand(shop, OTHER, shirt["variant_id"])
    caps_hcm = _onhand(shop, HCM, cap["variant_id"])

    first = _ship(shop, order["id"], line_items=[{"id": shirt["id"], "quantity": 2}], location_id=OTHER,
                  tracking_company="Giao hàng nhanh", tracking_number="GHN123")
    assert first.status_code == 201, first.text
    f1 = first.json()["fulfillment"]
    assert f1["line_items"] == [{"id": shirt["id"], "variant_id": shirt["variant_id"], "sku": "AO-THUN-M",
                                 "quantity": 2}]
    assert (f1["location_id"], f1["tracking_company"], f1["tracking_number"]) == (OTHER, "Giao hàng nhanh",
                                                                                   "GHN123")
    assert f1["status"] == "success" and f1["carrier_status_code"] == "readytopick"
    mid = _order(shop, order["id"])
    assert mid["fulfillment_status"] == "partial"
    assert [(li["fulfillable_quantity"], li["fulfillment_status"]) for li in mid["line_items"]] == [
        (1, "partial"), (1, "notfulfilled")]
    assert _onhand(shop, OTHER, shirt["variant_id"]) == shirts_other - 2
    assert _onhand(shop, HCM, shirt["variant_id"]) == shirts_hcm
    partial = shop.api("GET", "/orders.json", params={"fulfillment_status": "partial", "status": "any"})
    assert order["id"] in [o["id"] for o in partial.json()["orders"]]

    rest = shop.admin("POST", f"/orders/{order['id']}/fulfill", json={})      # no line_items: all left
    assert rest.status_code == 200, rest.text
    done = rest.json()["order"]
    assert done["fulfillment_status"] == "fulfilled"
    assert [(li["fulfillable_quantity"], li["fulfillment_status"]) for li in done["line_items"]] == [
        (0, "fulfilled"), (0, "fulfilled")]
    assert [[(fl["id"], fl["quantity"]) for fl in f["line_items"]] for f in done["fulfillments"]] == [
        [(shirt["id"], 2)], [(shirt["id"], 1), (cap["id"], 1)]]
    assert _onhand(shop, HCM, shirt["variant_id"]) == shirts_hcm - 1
    assert _onhand(shop, HCM, cap["variant_id"]) == caps_hcm - 1
    listed = shop.api("GET", f"/orders/{order['id']}/fulfillments.json").json()["fulfillments"]
    assert [f["id"] for f in listed] == [f1["id"], done["fulfillments"][1]["id"]]
    one = shop.api("GET", f"/orders/{order['id']}/fulfillments/{f1['id']}.json").json()["fulfillment"]
    assert one["tracking_number"] == "GHN123"


def test_admin_fulfill_takes_the_same_line_items(shop):
    order = _create(shop, [("AO-THUN-M", 3, None)], **BANK)
    line = order["line_items"][0]
    answer = shop.admin("POST", f"/orders/{order['id']}/fulfill",
                        json={"line_items": [{"id": line["id"], "quantity": 1}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["order"]["line_items"][0]["fulfillable_quantity"] == 2
    assert answer.json()["order"]["fulfillment_status"] == "partial"


def test_fulfilment_refusals_change_nothing(shop):
    order = _create(shop, [("AO-THUN-M", 2, None)], **BANK)
    line = order["line_items"][0]
    before = _onhand(shop, HCM, line["variant_id"])
    refusals = {
        "more than left": {"line_items": [{"id": line["id"], "quantity": 3}]},
        "unknown line": {"line_items": [{"id": 999, "quantity": 1}]},
        "zero": {"line_items": [{"id": line["id"], "quantity": 0}]},
        "not a number": {"line_items": [{"id": line["id"], "quantity": "two"}]},
        "twice the line": {"line_items": [{"id": line["id"], "quantity": 2},
                                          {"id": line["id"], "quantity": 1}]},
        "unknown location": {"location_id": 42},
    }
    for case, body in refusals.items():
        answer = _ship(shop, order["id"], **body)
        assert answer.status_code == 422, case
        assert all(field.startswith(("line_items", "location_id")) for field in answer.json()["errors"]), case
    assert _order(shop, order["id"])["fulfillments"] == []
    assert _onhand(shop, HCM, line["variant_id"]) == before

    assert _ship(shop, order["id"]).status_code == 201
    assert _ship(shop, order["id"]).json()["errors"] == {"order": ["nothing left to fulfil"]}
    cancelled = _create(shop, [("AO-THUN-M", 1, None)], **BANK)
    assert shop.api("POST", f"/orders/{cancelled['id']}/cancel.json", json={}).status_code == 200
    answer = _ship(shop, cancelled["id"])
    assert answer.status_code == 422 and "cancelled" in answer.json()["errors"]["order"][0]


# -- 2. several captures by gateway -------------------------------------------------------------
def test_deposit_then_balance_each_capture_keeps_its_own_gateway(shop):
    order = _create(shop, [("QUAN-JEAN-32", 1, None)], **COD)     # 450 000
    assert order["financial_status"] == "pending"
    deposit = shop.api("POST", f"/orders/{order['id']}/transactions.json", json={"transaction": {
        "kind": "Capture", "amount": 100000, "gateway": "Bank transfer"}})
    assert deposit.status_code == 201, deposit.text
    assert (deposit.json()["transaction"]["gateway"], deposit.json()["transaction"]["is_cod_gateway"]) == (
        "Bank transfer", False)
    assert _order(shop, order["id"])["financial_status"] == "partiallypaid"
    assert _pay(shop, order["id"], amount=400000).status_code == 422      # more than the 350 000 due
    cash = _pay(shop, order["id"], amount=50000, gateway="Tiền mặt")
    assert cash.status_code == 200 and cash.json()["order"]["financial_status"] == "partiallypaid"
    balance = _pay(shop, order["id"])                   # the rest, on the order's own (COD) gateway
    paid = balance.json()["order"]
    assert paid["financial_status"] == "paid" and paid["gateway"] == COD["gateway"]
    assert _money(paid, "capture") == [(Decimal(100000), "Bank transfer", False),
                                       (Decimal(50000), "Tiền mặt", False),
                                       (Decimal(300000), COD["gateway"], True)]
    assert _pay(shop, order["id"]).json()["errors"] == {"order": ["order is already paid"]}
    over = shop.api("POST", f"/orders/{order['id']}/transactions.json",
                    json={"transaction": {"kind": "Capture", "amount": 1}})
    assert over.status_code == 422


# -- 3. COD through the carrier -----------------------------------------------------------------
def test_cod_split_over_two_shipments_is_recorded_when_the_carrier_collects(shop):
    order = _create(shop, [("AO-THUN-M", 1, None), ("MU-LUOI-TRAI", 1, None)],
                    shipping_lines=[{"code": "GHTK", "title": "GHTK", "price": 30000}], **COD)   # 430 000
    shirt, cap = order["line_items"]
    f1 = _ship(shop, order["id"], line_items=[{"id": shirt["id"]}], cod_amount=280000).json()["fulfillment"]
    assert (f1["cod_amount"], f1["carrier_cod_status_code"]) == (280000, "codpending")
    assert _ship(shop, order["id"], cod_amount=200000).status_code == 422    # only 150 000 left to collect
    f2 = _ship(shop, order["id"]).json()["fulfillment"]                         # default: what is left
    assert (f2["cod_amount"], f2["carrier_cod_status_code"]) == (150000, "codpending")

    moved = _carrier(shop, order["id"], f1["id"], status="delivering")
    assert moved.status_code == 200, moved.text
    assert moved.json()["fulfillment"]["carrier_status_code"] == "delivering"
    assert moved.json()["order"]["financial_status"] == "pending"
    collected = _carrier(shop, order["id"], f1["id"], status="delivered", cod="codpaid").json()
    f1_now, mid = collected["fulfillment"], collected["order"]
    assert (f1_now["carrier_status_code"], f1_now["carrier_status_name"]) == ("delivered", "Đã giao hàng")
    assert f1_now["carrier_cod_status_code"] == "codpaid" and f1_now["cod_paid_date"]
    assert f1_now["delivered_date"] and f1_now["delivering_date"]
    assert mid["financial_status"] == "partiallypaid"
    assert _money(mid, "capture") == [(Decimal(280000), COD["gateway"], True)]

    remitted = _carrier(shop, order["id"], f1["id"], cod="codreceipt").json()["order"]
    assert len(_money(remitted, "capture")) == 1          # the remittance is no second payment
    final = _carrier(shop, order["id"], f2["id"], status="delivered", cod="codreceipt").json()["order"]
    assert final["financial_status"] == "paid"
    assert _money(final, "capture") == [(Decimal(280000), COD["gateway"], True),
                                        (Decimal(150000), COD["gateway"], True)]


def test_cod_on_a_bank_order_and_carrier_refusals(shop):
    order = _create(shop, [("QUAN-JEAN-32", 1, None)], **BANK)       # 450 000
    assert _pay(shop, order["id"], amount=100000).status_code == 200   # deposit by bank
    prepaid = _ship(shop, order["id"]).json()["fulfillment"]
    assert (prepaid["cod_amount"], prepaid["carrier_cod_status_code"]) == (0, "none")   # not a COD order
    other = _create(shop, [("QUAN-JEAN-32", 1, None)], **BANK)
    assert _pay(shop, other["id"], amount=100000).status_code == 200
    f = _ship(shop, other["id"], cod_amount=350000).json()["fulfillment"]    # balance collected by carrier
    assert f["cod_amount"] == 350000
    refusals = [({"status": "lost"}, "status"), ({"cod": "maybe"}, "cod"), ({}, "status")]
    for body, field in refusals:
        answer = _carrier(shop, other["id"], f["id"], **body)
        assert answer.status_code == 422 and field in answer.json()["errors"], body
    # Nothing to collect on a fulfilment without COD.
    assert _carrier(shop, order["id"], prepaid["id"], cod="codpaid").status_code == 422
    assert _carrier(shop, other["id"], 12345, status="delivered").status_code == 404
    paid = _carrier(shop, other["id"], f["id"], cod="codpaid").json()["order"]
    assert paid["financial_status"] == "paid"
    assert _money(paid, "capture") == [(Decimal(100000), "Bank transfer", False),
                                       (Decimal(350000), COD["gateway"], True)]
    assert _carrier(shop, other["id"], f["id"], cod="codpending").status_code == 422        # no way back


# -- 4. refunds and cancellations ---------------------------------------------------------------
def test_restock_brings_back_only_what_had_shipped(shop):
    order = _create(shop, [("AO-THUN-M", 3, None)], **BANK)      # 750 000
    line = order["line_items"][0]
    _pay(shop, order["id"])
    _ship(shop, order["id"], line_items=[{"id": line["id"], "quantity": 1}])
    shipped_level = _onhand(shop, HCM, line["variant_id"])
    # One unit of the two still in the warehouse: it leaves the order, no stock moves.
    first = _refund(shop, order["id"], restock=True,
                    refund_line_items=[{"line_item_id": line["id"], "quantity": 1}],
                    transactions=[{"amount": 250000, "kind": "refund"}])
    assert first.status_code == 201, first.text
    assert _onhand(shop, HCM, line["variant_id"]) == shipped_level
    after_first = _order(shop, order["id"])
    assert after_first["line_items"][0]["fulfillable_quantity"] == 1
    assert after_first["financial_status"] == "partially_refunded"
    # Two more: the last unshipped one goes, the shipped one comes back.
    second = _refund(shop, order["id"], restock=True,
                     refund_line_items=[{"line_item_id": line["id"], "quantity": 2}],
                     transactions=[{"amount": 500000, "kind": "refund"}])
    assert second.status_code == 201, second.text
    assert second.json()["refund"]["location_id"] == HCM
    assert _onhand(shop, HCM, line["variant_id"]) == shipped_level + 1
    final = _order(shop, order["id"])
    assert final["financial_status"] == "refunded" and final["fulfillment_status"] == "restocked"
    assert final["line_items"][0]["fulfillable_quantity"] == 0
    assert _refund(shop, order["id"], refund_line_items=[{"line_item_id": line["id"], "quantity": 1}]) \
        .status_code == 422                                       # nothing left to refund


def test_return_goes_back_to_the_location_it_shipped_from(shop):
    order = _create(shop, [("AO-THUN-M", 1, None)], **BANK)
    line = order["line_items"][0]
    _pay(shop, order["id"])
    _ship(shop, order["id"], location_id=OTHER)
    before = _onhand(shop, OTHER, line["variant_id"]), _onhand(shop, HCM, line["variant_id"])
    assert _refund(shop, order["id"], restock=True,
                   refund_line_items=[{"line_item_id": line["id"], "quantity": 1}]).status_code == 201
    assert (_onhand(shop, OTHER, line["variant_id"]), _onhand(shop, HCM, line["variant_id"])) == (
        before[0] + 1, before[1])


def test_refund_without_restock_keeps_stock_and_line_status(shop):
    order = _create(shop, [("AO-THUN-M", 2, None)], **BANK)
    line = order["line_items"][0]
    _pay(shop, order["id"])
    _ship(shop, order["id"])
    level = _onhand(shop, HCM, line["variant_id"])
    answer = _refund(shop, order["id"], refund_line_items=[{"line_item_id": line["id"], "quantity": 1}],
                     transactions=[{"amount": 250000, "kind": "refund"}])
    assert answer.status_code == 201 and answer.json()["refund"]["restock"] is False
    after = _order(shop, order["id"])
    assert _onhand(shop, HCM, line["variant_id"]) == level
    assert after["line_items"][0]["fulfillment_status"] == "fulfilled"
    assert after["financial_status"] == "partially_refunded"


def test_money_only_refunds_goodwill_and_shipping(shop):
    order = _create(shop, [("AO-THUN-M", 1, None)], **BANK,
                    shipping_lines=[{"code": "GHN", "title": "Giao hàng nhanh", "price": 30000}])   # 280 000
    line = order["line_items"][0]
    _pay(shop, order["id"])
    _ship(shop, order["id"])
    level = _onhand(shop, HCM, line["variant_id"])
    goodwill = _refund(shop, order["id"], note="giảm giá vì giao trễ",
                       transactions=[{"amount": 20000, "kind": "refund"}]).json()["refund"]
    # Haravan's refund has no shipping field: a shipping refund is money only, named in the note.
    shipping = _refund(shop, order["id"], note="hoàn phí vận chuyển",
                       transactions=[{"amount": 30000, "kind": "refund"}]).json()["refund"]
    for refund in (goodwill, shipping):
        assert refund["refund_line_items"] == [] and refund["restock"] is False
    assert [(r["note"], r["transactions"][0]["amount"]) for r in _order(shop, order["id"])["refunds"]] == [
        ("giảm giá vì giao trễ", -20000), ("hoàn phí vận chuyển", -30000)]
    after = _order(shop, order["id"])
    assert after["financial_status"] == "partially_refunded"
    assert after["fulfillment_status"] == "fulfilled" and _onhand(shop, HCM, line["variant_id"]) == level


def test_refunds_never_exceed_money_captured_less_refunded(shop):
    order = _create(shop, [("AO-THUN-M", 1, None)], **BANK)      # 250 000
    unpaid = _refund(shop, order["id"], transactions=[{"amount": 1, "kind": "refund"}])
    assert unpaid.status_code == 422 and "transactions" in unpaid.json()["errors"]
    _pay(shop, order["id"], amount=200000)
    assert _refund(shop, order["id"], transactions=[{"amount": 150000, "kind": "refund"}]).status_code == 201
    assert _refund(shop, order["id"], transactions=[{"amount": 50001, "kind": "refund"}]).status_code == 422
    over = shop.api("POST", f"/orders/{order['id']}/transactions.json",
                    json={"transaction": {"kind": "Refund", "amount": 50001}})
    assert over.status_code == 422
    assert shop.api("POST", f"/orders/{order['id']}/cancel.json", json={"amount": "60000"}).status_code == 422
    assert _order(shop, order["id"])["cancelled_status"] == "uncancelled"
    assert _refund(shop, order["id"], transactions=[{"amount": 50000, "kind": "refund"}]).status_code == 201
    assert _order(shop, order["id"])["financial_status"] == "refunded"


def test_cancel_refunding_less_than_paid_restocks_only_shipped_units(shop):
    order = _create(shop, [("AO-THUN-M", 3, None)], **BANK)      # 750 000
    line = order["line_items"][0]
    _pay(shop, order["id"])
    _ship(shop, order["id"], line_items=[{"id": line["id"], "quantity": 2}])
    level = _onhand(shop, HCM, line["variant_id"])
    answer = shop.api("POST", f"/orders/{order['id']}/cancel.json",
                      json={"reason": "customer", "amount": "700000", "restock": True})
    assert answer.status_code == 200, answer.text
    cancelled = answer.json()["order"]
    assert cancelled["cancelled_status"] == "cancelled"
    assert cancelled["financial_status"] == "partially_refunded"
    assert _money(cancelled, "refund") == [(Decimal(-700000), "Bank transfer", False)]
    assert cancelled["refunds"][0]["refund_line_items"][0]["quantity"] == 3
    assert _onhand(shop, HCM, line["variant_id"]) == level + 2    # the unshipped unit never left
    assert cancelled["line_items"][0]["fulfillable_quantity"] == 0


def test_cancel_with_restock_after_a_partial_return_refunds_the_rest(shop):
    order = _create(shop, [("AO-THUN-M", 2, None)], **BANK)
    line = order["line_items"][0]
    _pay(shop, order["id"])
    _ship(shop, order["id"])
    level = _onhand(shop, HCM, line["variant_id"])
    _refund(shop, order["id"], restock=True, refund_line_items=[{"line_item_id": line["id"], "quantity": 1}])
    answer = shop.api("POST", f"/orders/{order['id']}/cancel.json", json={"restock": True})
    assert answer.status_code == 200, answer.text
    assert [r["refund_line_items"][0]["quantity"] for r in answer.json()["order"]["refunds"]] == [1, 1]
    assert _onhand(shop, HCM, line["variant_id"]) == level + 2


# -- 5. tax -------------------------------------------------------------------------------------
def test_tax_on_top_adds_to_the_total(shop):
    order = _create(shop, [("AO-THUN-M", 2, 250000), ("QUAN-JEAN-32", 1, 400000)], **BANK, tax_rate=0.1,
                    discount_codes=[{"code": "HE2024", "amount": 50000}],
                    shipping_lines=[{"code": "GHTK", "title": "GHTK", "price": 30000}])
    assert (order["total_line_items_price"], order["total_discounts"]) == (900000, 50000)
    assert [t["tax_lines"] for t in order["line_items"]] == [
        [{"title": "VAT", "rate": 0.1, "price": 50000}], [{"title": "VAT", "rate": 0.1, "price": 40000}]]
    assert order["total_tax"] == 90000 and order["taxes_included"] is False
    assert order["tax_lines"] == [{"title": "VAT", "rate": 0.1, "price": 90000}]
    assert order["total_price"] == 900000 - 50000 + 30000 + 90000
    assert all(li["taxable"] for li in order["line_items"])


def test_tax_included_in_prices_with_rates_per_line(shop):
    body = {"line_items": [
        {"sku": "AO-THUN-M", "quantity": 1, "price": 550000,
         "tax_lines": [{"title": "VAT 10%", "rate": 0.1}]},
        {"sku": "VO-COTTON-Den", "quantity": 2, "price": 108000,
         "tax_lines": [{"title": "VAT 8%", "rate": "0.08"}]},
        {"sku": "HOP-QUA", "quantity": 1, "price": 45000}],
        "taxes_included": True, "shipping_lines": [{"code": "GHTK", "title": "GHTK", "price": 20000}], **BANK}
    taxed = shop.api("POST", "/orders.json", json={"order": body}).json()["order"]
    assert [li["tax_lines"] for li in taxed["line_items"]] == [
        [{"title": "VAT 10%", "rate": 0.1, "price": 50000}],
        [{"title": "VAT 8%", "rate": 0.08, "price": 16000}], []]
    assert taxed["line_items"][2]["taxable"] is False
    assert taxed["total_tax"] == 66000 and taxed["taxes_included"] is True
    assert {(t["title"], t["price"]) for t in taxed["tax_lines"]} == {("VAT 10%", 50000), ("VAT 8%", 16000)}
    assert taxed["total_price"] == 550000 + 216000 + 45000 + 20000     # the tax is inside the prices


def test_tax_defaults_to_none_and_bad_rates_are_refused(shop):
    plain = _create(shop, [("AO-THUN-M", 1, None)], **BANK)
    assert (plain["total_tax"], plain["tax_lines"], plain["taxes_included"]) == (0, [], False)
    assert plain["total_price"] == 250000
    for bad, field in ((1.5, "tax_rate"), ("ten", "tax_rate")):
        answer = shop.api("POST", "/orders.json", json={"order": {
            "line_items": [{"sku": "AO-THUN-M", "quantity": 1}], "tax_rate": bad}})
        assert answer.status_code == 422 and field in answer.json()["errors"], bad
    answer = shop.api("POST", "/orders.json", json={"order": {
        "line_items": [{"sku": "AO-THUN-M", "quantity": 1, "tax_lines": [{"rate": -0.1}]}]}})
    assert answer.status_code == 422 and "line_items[0].tax_lines[0].rate" in answer.json()["errors"]


def test_a_demo_cod_order_delivered_unpaid_is_paid_when_the_carrier_collects(shop):
    order = shop.state()["orders"][list(SCENARIOS).index("cod_delivered_unpaid")]
    shipment = order["fulfillments"][0]
    assert shipment["carrier_cod_status_code"] == "codpending"
    assert shipment["cod_amount"] == order["total_price"]
    paid = _carrier(shop, order["id"], shipment["id"], cod="codpaid").json()["order"]
    assert paid["financial_status"] == "paid"
    assert _money(paid, "capture") == [(Decimal(str(order["total_price"])), COD["gateway"], True)]
