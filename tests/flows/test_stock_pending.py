"""End to end: the stock Haravan can sell is MISA's on-hand less what hexaflow's sales vouchers
not yet posted will issue, plus the returns not yet posted (requirements §5b, "Stock to Haravan").

Both sandboxes run in-process on loopback HTTP (tests/flows/conftest.py). The tests act as the
shop (orders fulfilled and refunded through Haravan's routes), as the accountant (MISA's
``/_sandbox/requests/{org_refid}/generate`` and ``/post``, after which MISA's balance drops) and
as the integrator (``hexaflow run`` of the packaged products, customers, orders and inventory
flows), and read Haravan's on-hand figures through its API.
"""
from __future__ import annotations

import re

from e2e_world import ITEMS, World
from hexaflow.connectors.misa import MisaConnector
from hexaflow.connectors.sandbox_world import WAREHOUSES
from hexaflow.state import open_store

HCM = WAREHOUSES[0].location_id            # KHO_HCM, where the sandbox's orders ship from
SHIRT, JEANS, CAP = "AO-THUN-M", "QUAN-JEAN-32", "MU-LUOI-TRAI"


# -- the company, the shop and hexaflow ---------------------------------------------------------
def stocked(w: World, **quantities: int) -> None:
    """Items on sale (a selling price, so products.yaml puts them on Haravan), their stock in
    KHO_HCM, the products on Haravan and a first inventory run: Haravan holds MISA's figures."""
    entries = [{"dictionary_type": 3, "inventory_item_code": sku, "inventory_item_name": name,
                "inventory_item_type": 0, "unit_name": unit, "unit_price": price // 2,
                "sale_price1": price, "fixed_sale_price": price}
               for sku, (name, unit, price) in ITEMS.items()]
    answer = w.http.post(f"{w.misa_url}/_sandbox/dictionary", json={"dictionary": entries})
    assert answer.status_code == 200, answer.text
    for sku, quantity in quantities.items():
        set_stock(w, sku.replace("_", "-"), quantity)
    w.run("products")
    w.run("inventory")


def set_stock(w: World, sku: str, quantity: int) -> None:
    answer = w.http.post(f"{w.misa_url}/_sandbox/stock", json={
        "inventory_item_code": sku, "stock_code": "KHO_HCM", "quantity": quantity})
    assert answer.status_code == 200, answer.text


def misa_stock(w: World) -> dict[str, int]:
    rows = w.http.get(f"{w.misa_url}/_sandbox/stock").json()["balances"]
    return {r["inventory_item_code"]: int(r["quantity_balance"]) for r in rows
            if r["stock_code"] == "KHO_HCM" and r["inventory_item_code"] in ITEMS}


def on_hand(w: World) -> dict[str, int]:
    """SKU → qty_onhand at the HCM location, through GET /com/inventory_locations.json."""
    state = w.http.get(f"{w.haravan_url}/_sandbox/state").json()
    sku_of = {v["id"]: v["sku"] for p in state["products"] for v in p["variants"]}
    answer = w.http.get(f"{w.haravan_url}/com/inventory_locations.json", headers=w.auth,
                        params={"variant_ids": ",".join(map(str, sku_of))})
    assert answer.status_code == 200, answer.text
    return {sku_of[row["variant_id"]]: row["qty_onhand"]
            for row in answer.json()["inventory_locations"] if row["loc_id"] == HCM}


def order_of(w: World, *lines: tuple[str, int]) -> dict:
    """An order of ``lines`` (SKU, quantity), paid by bank, no shipping fee."""
    items = [{"sku": sku, "title": ITEMS[sku][0], "price": ITEMS[sku][2], "quantity": quantity}
             for sku, quantity in lines]
    customer = w.create_customer(first_name="Lan", last_name="Nguyễn",
                                 email="lan.nguyen@example.com")
    return w.create_order(gateway="Bank transfer", customer={"id": customer["id"]},
                          line_items=items)


def accountant(w: World, code: str, *actions: str) -> None:
    """The accountant generates and/or posts the request ``code`` in AMIS."""
    ref = w.requests()[code]["org_refid"]
    for action in actions:
        answer = w.http.post(f"{w.misa_url}/_sandbox/requests/{ref}/{action}")
        assert answer.status_code == 200, answer.text


def ledger_state(w: World, key: str) -> str:
    store = open_store(str(w.state))
    try:
        [entry] = [e for e in store.entries("default", "orders") if e.key == key]
        return entry.state
    finally:
        store.close()


def stock_line(output: str) -> str:
    match = re.search(r"^\s+stock\s+(.*)$", output, re.M)
    assert match, output
    return match.group(1)


# -- the tests ----------------------------------------------------------------------------------
def test_a_shipped_sale_is_held_until_posted_then_the_figure_stays_right(world):
    stocked(world, AO_THUN_M=20, QUAN_JEAN_32=10, MU_LUOI_TRAI=5)
    assert on_hand(world) == {SHIRT: 20, JEANS: 10, CAP: 5}
    order = order_of(world, (SHIRT, 2), (JEANS, 1))
    world.fulfill(order["id"])
    world.sync()
    bh = f"BH_{order['id']}"
    assert world.requests()[bh]["status"] == "accepted"
    assert ledger_state(world, bh) == "accepted"

    # The sales voucher waits for the accountant: MISA still counts the goods, Haravan does not
    # offer them again. Only the two changed figures are sent.
    assert misa_stock(world) == {SHIRT: 20, JEANS: 10, CAP: 5}
    output = world.run("inventory")
    assert stock_line(output).startswith("written 2, skipped 1"), output
    assert on_hand(world) == {SHIRT: 18, JEANS: 9, CAP: 5}
    assert stock_line(world.run("inventory")).startswith("skipped 3")

    # The accountant generates and posts it: MISA's balance drops by the shipment. The next
    # inventory run learns it (its poll), holds nothing any more, and sends nothing: the figure
    # was already right, and is not subtracted twice.
    accountant(world, bh, "generate", "post")
    assert misa_stock(world) == {SHIRT: 18, JEANS: 9, CAP: 5}
    output = world.run("inventory")
    assert ledger_state(world, bh) == "posted"
    assert stock_line(output).startswith("skipped 3"), output
    assert on_hand(world) == {SHIRT: 18, JEANS: 9, CAP: 5}

    # A count in MISA afterwards is MISA's figure again, nothing held.
    set_stock(world, SHIRT, 17)
    world.run("inventory")
    assert on_hand(world) == {SHIRT: 17, JEANS: 9, CAP: 5}


def test_a_posting_hexaflow_learns_late_is_subtracted_twice_for_one_run_then_converges(world, monkeypatch):
    stocked(world, AO_THUN_M=20, QUAN_JEAN_32=10, MU_LUOI_TRAI=5)
    order = order_of(world, (SHIRT, 3))
    world.fulfill(order["id"])
    world.sync()
    bh = f"BH_{order['id']}"
    world.run("inventory")
    assert on_hand(world)[SHIRT] == 17

    # Posted in MISA while MISA's log does not show it yet (the poll learns nothing): the
    # balance already dropped and the voucher is still held, so this run offers 3 too few.
    accountant(world, bh, "generate", "post")
    real_poll = MisaConnector.poll
    monkeypatch.setattr(MisaConnector, "poll", lambda self, refs: [])
    world.run("inventory")
    assert ledger_state(world, bh) == "accepted"
    assert on_hand(world)[SHIRT] == 14

    # The next run learns the posting: nothing is held, the figure changed and is sent again.
    monkeypatch.setattr(MisaConnector, "poll", real_poll)
    output = world.run("inventory")
    assert ledger_state(world, bh) == "posted"
    assert stock_line(output).startswith("written 1, skipped 2"), output
    assert on_hand(world) == {SHIRT: 17, JEANS: 10, CAP: 5}


def test_a_restocked_return_not_yet_posted_is_offered_again(world):
    stocked(world, AO_THUN_M=20, QUAN_JEAN_32=10, MU_LUOI_TRAI=5)
    order = order_of(world, (SHIRT, 2), (CAP, 1))
    oid = order["id"]
    world.pay(oid, "Bank transfer")
    world.fulfill(oid)
    world.sync()
    accountant(world, f"BH_{oid}", "generate", "post")
    world.run("inventory")
    assert on_hand(world) == {SHIRT: 18, JEANS: 10, CAP: 4}

    # One shirt comes back and Haravan restocks it: its sales return waits for the accountant,
    # and the shirt is on sale again at once. A refund without restock would hold nothing.
    shirt = next(li for li in world.order(oid)["line_items"] if li["sku"] == SHIRT)
    world.refund(oid, restock=True, refund_line_items=[{"line_item_id": shirt["id"], "quantity": 1}],
                 transactions=[{"amount": ITEMS[SHIRT][2]}])
    world.sync("orders")
    btl = f"BTL_{oid}"
    assert world.requests()[btl]["payload"]["is_return_with_inward"] is True
    assert misa_stock(world)[SHIRT] == 18
    output = world.run("inventory")
    assert stock_line(output).startswith("written 1, skipped 2"), output
    assert on_hand(world) == {SHIRT: 19, JEANS: 10, CAP: 4}

    # Posted: MISA takes the shirt back into stock, the return holds nothing, the same figure.
    accountant(world, btl, "generate", "post")
    assert misa_stock(world)[SHIRT] == 19
    output = world.run("inventory")
    assert ledger_state(world, btl) == "posted"
    assert stock_line(output).startswith("skipped 3"), output
    assert on_hand(world) == {SHIRT: 19, JEANS: 10, CAP: 4}


def test_a_rejected_voucher_holds_nothing(world):
    stocked(world, AO_THUN_M=20, QUAN_JEAN_32=10, MU_LUOI_TRAI=5)
    accepted = order_of(world, (SHIRT, 2))
    # A line whose SKU MISA has no item for: MISA refuses the whole sales voucher.
    refused = world.create_order(gateway="Bank transfer", line_items=[
        {"sku": SHIRT, "title": ITEMS[SHIRT][0], "price": ITEMS[SHIRT][2], "quantity": 4},
        {"sku": "KHONG-CO-TRONG-MISA", "title": "Hàng lạ", "price": 1000, "quantity": 1}])
    world.fulfill(accepted["id"])
    world.fulfill(refused["id"])
    world.run("customers")
    world.run("orders", expect_exit=2)
    world.wait_settled()
    assert world.requests()[f"BH_{refused['id']}"]["status"] == "rejected"
    assert ledger_state(world, f"BH_{refused['id']}") == "rejected"
    world.run("inventory")
    assert on_hand(world)[SHIRT] == 18             # only the accepted voucher's 2 are held
