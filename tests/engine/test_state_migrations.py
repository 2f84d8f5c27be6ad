"""Versioned schema migrations (yoyo, hexaflow.migrate): a new store gets every migration of
its backend, and a state file written by hexaflow before migrations were versioned (made by
main 9fa93d2, fixtures/make_state_9fa93d2.py) opens with all of its data."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from hexaflow.migrate import migration_ids
from hexaflow.state import open_store

OLD_FILE = Path(__file__).parent / "fixtures" / "state-9fa93d2.db"


def test_a_new_store_has_every_migration_of_its_backend(state_target):
    store = open_store(str(state_target))
    try:
        applied = {r["migration_id"] for r in state_target.rows("SELECT migration_id FROM _yoyo_migration")}
        assert applied == migration_ids(state_target.backend) and "0001.tables" in applied
        columns = {
            r["name"] for r in state_target.rows(
                "SELECT column_name AS name FROM information_schema.columns WHERE table_name='ledger'"
                if state_target.backend == "postgresql" else "SELECT name FROM pragma_table_info('ledger')")}
        assert {"is_ensure", "stock"} <= columns
    finally:
        store.close()
    again = open_store(str(state_target))       # already current: nothing applied twice
    again.close()
    assert len(state_target.rows("SELECT migration_id FROM _yoyo_migration")) == len(applied)


def test_a_state_file_from_before_versioned_migrations_keeps_its_data(tmp_path):
    path = tmp_path / "state.db"
    shutil.copy(OLD_FILE, path)
    old = sqlite3.connect(path)
    before = {table: old.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
              for table in ("ledger", "ledger_events", "cursors", "runs", "dead_letters", "locks",
                            "inbox", "key_templates")}
    assert not old.execute("SELECT 1 FROM sqlite_master WHERE name='_yoyo_migration'").fetchall()
    old.close()

    store = open_store(str(path))
    try:
        after = {table: store.db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
                 for table in before}
        assert after == before
        assert {r[0] for r in store.db.execute("SELECT migration_id FROM _yoyo_migration")} == \
            migration_ids("sqlite")
        # What the code reads of it, as it read it before.
        assert store.get_cursor("default", "orders") == "2026-11-01T00:00:00Z"
        assert store.entry("default", "orders", "sales_order", "DH_1000").state == "accepted"
        assert store.entry("default", "orders", "sales_order.customer", "KH_1").is_ensure
        assert store.pending_stock("default", "misa") == {"KHO1": {"SKU-1": Decimal("-2.5")}}
        assert [d["reason"] for d in store.dead_letters("default")] == ["rejected: no such item"]
        fence = store.acquire_lock("default", "orders")
        assert fence == 2                       # the old file's lock row had fence 1
        store.release_lock("default", "orders", fence)
    finally:
        store.close()


def test_processes_opening_an_old_file_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "state.db"
    shutil.copy(OLD_FILE, path)
    code = (f"from hexaflow.state import open_store; s = open_store({str(path)!r}); "
            f"print(s.get_cursor('default', 'orders')); s.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "2026-11-01T00:00:00Z"
    db = sqlite3.connect(path)
    ids = [r[0] for r in db.execute("SELECT migration_id FROM _yoyo_migration")]
    assert sorted(ids) == sorted(migration_ids("sqlite"))       # each once
    assert db.execute("SELECT count(*) FROM ledger").fetchone()[0] == 5
