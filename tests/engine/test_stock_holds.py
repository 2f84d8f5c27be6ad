"""Stock held by documents not yet final (docs/state.md, "Stock held by open documents"): the
ledger keeps what each document will move in its target's stock, counts it while the document
is being sent or waits in the target, and stops counting once it is posted, rejected, in
conflict or deleted; state files from before the ``stock`` column get it by migration."""
from __future__ import annotations

import sqlite3
from importlib import resources
from decimal import Decimal

import pytest

from hexaflow.connector import StockMove
from hexaflow.ledger_rows import LedgerWrite, Outcome, RowRef, ledger_write
from hexaflow.plan import Document
from hexaflow.state import HOLDING, open_store

# A sales voucher with stock issue as the orders flow sends it: two goods lines, the shipping
# fee (no warehouse: not goods).
SALE = {"voucher_type": 13, "is_sale_with_outward": True, "org_refid": "ref-bh-1", "detail": [
    {"inventory_item_code": "AO-THUN-M", "stock_code": "KHO_HCM", "quantity": 2},
    {"inventory_item_code": "QUAN-JEAN-32", "stock_code": "KHO_HCM", "quantity": 1},
    {"inventory_item_code": "DV_VANCHUYEN", "stock_code": None, "quantity": 1}]}
RETURN = {"voucher_type": 12, "is_return_with_inward": True, "org_refid": "ref-btl-1", "detail": [
    {"inventory_item_code": "AO-THUN-M", "stock_code": "KHO_HCM", "quantity": 1}]}


def doc(key: str, payload: dict, route: str = "sales_voucher", connector: str = "misa") -> Document:
    return Document("orders", route, connector, "voucher", "upsert", key, payload, {}, "1001",
                    None)


def send(store, key: str, payload: dict, state: str, tenant: str = "t", **more) -> RowRef:
    """Plan the document and give it ``state`` with its target ref (what a run does)."""
    d = doc(key, payload, **more)
    store.plan(ledger_write(tenant, d))
    ref = RowRef(tenant, "orders", d.route, key)
    store.mark(ref, Outcome(state, payload["org_refid"]))
    return ref


@pytest.fixture
def store(state_target):
    s = open_store(str(state_target))
    yield s
    s.close()


def test_a_sale_and_a_return_waiting_in_the_target_hold_their_lines(store):
    send(store, "BH_1", SALE, "accepted")
    send(store, "BTL_1", RETURN, "queued", route="sales_return")
    assert store.pending_stock("t", "misa") == {
        "KHO_HCM": {"AO-THUN-M": Decimal(-1), "QUAN-JEAN-32": Decimal(-1)}}
    # Only this tenant's documents, only those written to the connector asked about.
    assert store.pending_stock("other", "misa") == {}
    assert store.pending_stock("t", "haravan") == {}
    assert sorted(store.holding_refs("t", "misa")) == ["ref-bh-1", "ref-btl-1"]


@pytest.mark.parametrize("state", ["planned", "failed", "queued", "accepted", "generated",
                                   "done", "rejected", "conflict", "posted", "deleted"])
def test_a_document_holds_stock_only_while_its_moves_are_still_to_come(store, state):
    send(store, "BH_1", SALE, state)
    held = store.pending_stock("t", "misa")
    if state in HOLDING:
        assert held == {"KHO_HCM": {"AO-THUN-M": Decimal(-2), "QUAN-JEAN-32": Decimal(-1)}}
    else:
        assert held == {}
    assert HOLDING == ("planned", "failed", "queued", "accepted", "generated")


@pytest.mark.parametrize("result", ["posted", "rejected", "deleted"])
def test_a_later_result_that_ends_the_document_releases_its_stock(store, result):
    send(store, "BH_1", SALE, "queued")
    store.apply_result("t", "misa", "ref-bh-1", result)
    assert store.pending_stock("t", "misa") == {}
    assert store.holding_refs("t", "misa") == []


def test_a_changed_document_holds_what_it_holds_now(store):
    send(store, "BH_1", SALE, "accepted")
    fewer = {**SALE, "detail": [{**SALE["detail"][0], "quantity": 1}]}
    send(store, "BH_1", fewer, "accepted")
    assert store.pending_stock("t", "misa") == {"KHO_HCM": {"AO-THUN-M": Decimal(-1)}}


def test_a_conflict_recorded_over_a_held_document_releases_it(store):
    # The accountant generated the voucher and the order changed: the row becomes a conflict
    # for a person to handle; it no longer holds (it would never be released otherwise).
    send(store, "BH_1", SALE, "accepted")
    store.record_decision(ledger_write("t", doc("BH_1", SALE)), "conflict", "generated in MISA")
    assert store.pending_stock("t", "misa") == {}


def test_documents_that_move_no_stock_hold_nothing(store):
    send(store, "DH_1", {**SALE, "voucher_type": 20}, "accepted", route="sales_order")
    send(store, "BH_2", {**SALE, "is_sale_with_outward": False, "org_refid": "r2"}, "accepted")
    send(store, "BTL_2", {**RETURN, "is_return_with_inward": False, "org_refid": "r3"}, "accepted",
         route="sales_return")
    store.plan(ledger_write("t", Document("orders", "withdraw", "misa", "voucher", "delete", "BH_3",
                                          SALE, {}, "1", None)))
    send(store, "STOCK_1", {"org_refid": "x", "quantity": 3}, "done", connector="haravan")
    assert store.pending_stock("t", "misa") == {}


def test_quantities_stay_exact_decimals(store):
    kg = {**SALE, "detail": [{"inventory_item_code": "GAO", "stock_code": "KHO_HCM",
                              "quantity": Decimal("0.1")}] * 3}
    send(store, "BH_1", kg, "accepted")
    assert store.pending_stock("t", "misa") == {"KHO_HCM": {"GAO": Decimal("-0.3")}}


# The tables as state files held them before the stock column: the first migration, and the
# is_ensure column the second adds.
OLD_LEDGER = resources.files("hexaflow").joinpath("migrations", "sqlite", "0001.tables.sql").read_text(
    encoding="utf-8") + "ALTER TABLE ledger ADD COLUMN is_ensure INTEGER NOT NULL DEFAULT 0;\n"


def test_an_old_state_file_holds_the_stock_of_documents_it_sent_before_the_upgrade(tmp_path):
    import json
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(OLD_LEDGER)
    for key, payload, state in (("BH_1", SALE, "accepted"), ("BH_2", SALE, "posted"),
                                ("BTL_1", RETURN, "generated")):
        db.execute("INSERT INTO ledger (tenant, flow, route, key, connector, document, action, "
                   "source_id, payload_hash, payload, state, target_ref, created_at, updated_at) "
                   "VALUES ('t', 'orders', 'r', ?, 'misa', 'voucher', 'upsert', '1', 'h', ?, ?, ?, "
                   "0, 0)", (key, json.dumps(payload), state, payload["org_refid"]))
    db.commit()
    db.close()
    for _ in range(2):                        # migrating twice changes nothing
        store = open_store(path)
        # BH_2 was posted: MISA's balance shows it already.
        assert store.pending_stock("t", "misa") == {
            "KHO_HCM": {"AO-THUN-M": Decimal(-1), "QUAN-JEAN-32": Decimal(-1)}}
        store.close()
    indexes = {row[1] for row in sqlite3.connect(path).execute("PRAGMA index_list(ledger)")}
    assert "ledger_stock" in indexes


def test_a_ledger_write_carries_its_connectors_stock_moves():
    write = ledger_write("t", doc("BH_1", SALE))
    assert write.stock == (StockMove("KHO_HCM", "AO-THUN-M", Decimal(-2)),
                           StockMove("KHO_HCM", "QUAN-JEAN-32", Decimal(-1)))
    assert LedgerWrite(write.ref, "misa", "voucher", "upsert", "1", None, SALE).stock == ()
