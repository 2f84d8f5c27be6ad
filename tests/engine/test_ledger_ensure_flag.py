"""Ensured prerequisites are flagged in the ledger (``is_ensure``), not recognised by a dot in
their route name; state files from before the flag get it by migration."""
from __future__ import annotations

import sqlite3
from importlib import resources

from test_ledger_decisions import World

from hexaflow.ledger_rows import LedgerWrite, RowRef
from hexaflow.state import open_store

# The tables as state files held them before the is_ensure column: the first migration (a
# released migration never changes).
OLD_LEDGER = resources.files("hexaflow").joinpath("migrations", "sqlite", "0001.tables.sql").read_text(
    encoding="utf-8")


def _old_row(db: sqlite3.Connection, route: str, key: str) -> None:
    db.execute("INSERT INTO ledger (tenant, flow, route, key, connector, document, action, "
               "source_id, payload_hash, payload, state, created_at, updated_at) "
               "VALUES ('t', 'orders', ?, ?, 'misa', 'voucher', 'upsert', '1', 'h', '{}', "
               "'queued', 0, 0)", (route, key))


def test_a_run_flags_the_ensured_customer_and_only_it(tmp_path, write, monkeypatch):
    w = World(tmp_path, write, monkeypatch)
    w.run([{"id": 1, "customer": "A", "memo": "x"}])
    flags = {e.route: e.is_ensure for e in w.store.entries("t")}
    assert flags == {"sales_order": False, "sales_order.customer": True}


def test_an_ensure_found_in_the_target_is_flagged_too(tmp_path):
    store = open_store(str(tmp_path / "state.db"))
    store.record_decision(LedgerWrite(RowRef("t", "orders", "sales_order.customer", "KH_A"),
                                      "misa", "dictionary", "create", "1", None, {},
                                      ensure=True), "done")
    (entry,) = store.entries("t")
    assert entry.is_ensure is True


def test_an_old_state_file_gets_the_flag_from_the_route_names(tmp_path):
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.executescript(OLD_LEDGER)
    _old_row(db, "sales_order", "DH_1")
    _old_row(db, "sales_order.customer", "HRV-1")
    db.commit()
    db.close()
    for _ in range(2):                        # migrating twice changes nothing
        store = open_store(path)
        flags = {e.key: e.is_ensure for e in store.entries("t")}
        assert flags == {"DH_1": False, "HRV-1": True}
        store.close()
