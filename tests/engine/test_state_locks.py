"""The flow lock and its fencing number, on each backend (docs/state.md, "Locks"): one holder
at a time, a higher number each time it is taken, and no write with a number that is no
longer the lock's. On PostgreSQL the lock is a session's advisory lock: losing the session
(killed, partitioned) loses the lock."""
from __future__ import annotations

import os

import pytest

from hexaflow.errors import LostLock
from hexaflow.ledger_rows import LedgerWrite, Outcome, RowRef
from hexaflow.state import open_store

REF = RowRef("t", "orders", "sales_order", "DH_1")


def _write(ref: RowRef = REF) -> LedgerWrite:
    return LedgerWrite(ref, "misa", "sales_order", "upsert", "1", None, {"n": 1})


@pytest.fixture
def stores(state_target):
    a, b = open_store(str(state_target)), open_store(str(state_target))
    yield a, b
    a.close()
    b.close()


def test_one_holder_at_a_time_and_a_higher_number_each_time(stores):
    a, b = stores
    first = a.acquire_lock("t", "orders", owner="host-a:1")
    assert first is not None
    assert b.acquire_lock("t", "orders", owner="host-b:2") is None
    assert b.lock_holder("t", "orders")[0] == "host-a:1"
    assert b.acquire_lock("t", "other-flow", owner="host-b:2") is not None   # per flow
    a.release_lock("t", "orders", first)
    assert b.lock_holder("t", "orders") is None
    second = b.acquire_lock("t", "orders", owner="host-b:2")
    assert second is not None and second > first


def test_a_run_that_lost_its_lock_cannot_write(state_target, stores):
    a, b = stores
    fence = a.acquire_lock("t", "orders")
    a.plan(_write(), fence)
    state_target.take_lock_from(os.getpid())      # expired (SQLite) / session ended (PostgreSQL)
    newer = b.acquire_lock("t", "orders", owner="host-b:2")
    assert newer is not None and newer > fence
    for attempt in (lambda: a.set_cursor("t", "orders", "c", fence),
                    lambda: a.plan(_write(RowRef("t", "orders", "sales_order", "DH_2")), fence),
                    lambda: a.mark(REF, Outcome("done"), fence),
                    lambda: a.renew_lock("t", "orders", fence)):
        with pytest.raises(LostLock):
            attempt()
    assert a.get_cursor("t", "orders") is None
    assert a.entry("t", "orders", "sales_order", "DH_2") is None
    assert a.entry("t", "orders", "sales_order", "DH_1").state == "planned"
    b.set_cursor("t", "orders", "c", newer)         # the new holder writes
    assert a.get_cursor("t", "orders") == "c"


def test_a_batch_commits_whole_or_not_at_all(stores):
    a, _ = stores
    fence = a.acquire_lock("t", "orders")
    with pytest.raises(RuntimeError):
        with a.transaction():
            a.plan(_write(), fence)
            a.set_cursor("t", "orders", "c", fence)
            raise RuntimeError("the run failed in the middle of a batch")
    assert a.entry("t", "orders", "sales_order", "DH_1") is None
    assert a.get_cursor("t", "orders") is None
    with a.transaction():
        a.plan(_write(), fence)
        a.mark(REF, Outcome("queued", target_ref="r1"), fence)
    assert a.entry("t", "orders", "sales_order", "DH_1").state == "queued"
