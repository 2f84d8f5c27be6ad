"""Which later result (a callback, a poll) moves a document in which state: only forward, and
only to what the target can still do from there (docs/state.md, "Later results")."""
from __future__ import annotations

import pytest

from hexaflow.connector import ASYNC_STATUSES
from hexaflow.ledger_rows import LedgerWrite, Outcome, RowRef
from hexaflow.state import open_store, result_applies

RESULTS = ("accepted", "rejected", "conflict", "generated", "posted", "deleted")
# One row per state a ledger row can be in; "x" where the result applies. Written out here
# (not derived from the code) so that a change to the rule is a change to this table too.
TABLE = """
state       accepted rejected conflict generated posted deleted
planned     .        .        .        .         .      .
failed      .        .        .        .         .      .
done        .        .        .        x         x      x
queued      x        x        x        x         x      x
accepted    .        .        .        x         x      x
rejected    .        .        .        x         x      x
conflict    .        .        .        .         .      x
generated   .        .        .        .         x      .
posted      .        .        .        .         .      .
deleted     .        .        .        .         .      .
"""


def _cases() -> list[tuple[str, str, bool]]:
    header, *rows = [line.split() for line in TABLE.strip().splitlines()]
    assert tuple(header[1:]) == RESULTS == ASYNC_STATUSES
    return [(row[0], result, mark == "x") for row in rows for result, mark in zip(RESULTS, row[1:])]


@pytest.mark.parametrize("state, result, applies", _cases(),
                         ids=[f"{s}-{r}" for s, r, _ in _cases()])
def test_a_result_applies_only_where_the_table_says(state, result, applies):
    assert result_applies(state, result) is applies


def _row(store, state: str) -> None:
    ref = RowRef("t", "orders", "sales_voucher", "BH_1")
    store.plan(LedgerWrite(ref, "misa", "voucher", "upsert", "1", None, {"n": 1}))
    store.mark(ref, Outcome(state, target_ref="ref-1"))


@pytest.mark.parametrize("state, result", [("accepted", "rejected"), ("accepted", "conflict"),
                                           ("posted", "deleted"), ("generated", "deleted"),
                                           ("rejected", "accepted"), ("planned", "accepted")])
def test_the_store_leaves_a_row_alone_when_the_result_does_not_apply(state_target, state, result):
    store = open_store(str(state_target))
    try:
        _row(store, state)
        events = store.events("t", "orders", "sales_voucher", "BH_1")
        assert store.apply_result("t", "misa", "ref-1", result, "Exception", "stale") == []
        entry = store.entry("t", "orders", "sales_voucher", "BH_1")
        assert (entry.state, entry.code, entry.message) == (state, None, None)
        assert store.events("t", "orders", "sales_voucher", "BH_1") == events
    finally:
        store.close()


def test_the_store_moves_a_row_forward_when_the_result_applies(state_target):
    store = open_store(str(state_target))
    try:
        _row(store, "queued")
        for result in ("accepted", "generated", "posted"):
            assert len(store.apply_result("t", "misa", "ref-1", result)) == 1
            assert store.entry("t", "orders", "sales_voucher", "BH_1").state == result
        assert [e[1] for e in store.events("t", "orders", "sales_voucher", "BH_1")] == [
            "planned", "queued", "accepted", "generated", "posted"]
    finally:
        store.close()
