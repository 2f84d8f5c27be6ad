"""The ledger decision as a table: one row per case of ``decide`` (a pure function of the
document and the ledger facts), every branch of engine/decide.py. The same table is in
docs/maintainers/runs.md."""
from __future__ import annotations

from dataclasses import replace

import pytest

from hexaflow.decide import (CONFLICT_DECISION, REFUSE, REJECTED_RETRIES, SEND, SKIP, LedgerFacts,
                             decide, ledger_facts, needs_same_target)
from hexaflow.ledger_rows import LedgerWrite, RowRef
from hexaflow.plan import Document
from hexaflow.state import ADOPTED, LedgerEntry, open_store, payload_hash

PAYLOAD = {"refno_finance": "DH_1", "total": "100"}
CHANGED = {"refno_finance": "DH_1", "total": "120"}


def doc(action: str = "upsert", payload: dict | None = None, source_id: str = "1",
        route: str = "sales_order") -> Document:
    return Document("orders", route, "misa", "sales_order", action, "DH_1",
                    payload or PAYLOAD, {}, source_id, None)


def row(state: str = "done", *, route: str = "sales_order", flow: str = "orders",
        source_id: str = "1", action: str = "upsert", payload: dict | None = None,
        code: str | None = None, attempts: int = 1, is_ensure: bool = False) -> LedgerEntry:
    return LedgerEntry("t", flow, route, "DH_1", "misa", "sales_order", action, source_id, None,
                       payload_hash(payload or PAYLOAD), "{}", None, state, None, code, None,
                       attempts, 0.0, 0.0, is_ensure)


def own(entry: LedgerEntry, *same_target: LedgerEntry) -> LedgerFacts:
    return LedgerFacts(entry, same_target)


def target(*rows: LedgerEntry) -> LedgerFacts:
    return LedgerFacts(None, rows)


# (case, document, facts, retry_rejected, expected decision, words of the reason)
TABLE = [
    # nothing in the ledger
    ("new document", doc(), target(), False, SEND, "new"),
    ("another record of the flow owns the key", doc(), target(row(source_id="2")), False,
     REFUSE, "already the document of record 2"),
    ("another record's own row for this route", doc(), own(row(source_id="2")), False,
     REFUSE, "already the document of record 2"),
    ("another record held the key but it failed", doc(), target(row("failed", source_id="2")), False,
     SEND, "new"),
    ("another flow's record holds the key", doc(), target(row(flow="customers", source_id="2",
                                                              route="other")), False,
     CONFLICT_DECISION, "already written by route other (flow customers)"),
    ("an ensure row of another record does not own the key", doc(),
     target(row(source_id="2", route="sales_order.customer", is_ensure=True)), False, SEND, "new"),
    ("another route of the same record wrote it", doc(), target(row(route="sales_voucher")), False,
     CONFLICT_DECISION, "make the two routes' `when` conditions exclusive"),
    ("another route's row is only planned", doc(), target(row("planned", route="sales_voucher")),
     False, SEND, "new"),
    ("another route withdrew it", doc(), target(row(route="sales_voucher", action="delete")), False,
     SEND, "new"),
    # this route's row exists
    ("planned by an earlier run", doc(), own(row("planned")), False, SEND, "not confirmed"),
    ("failed in an earlier run", doc(), own(row("failed")), False, SEND, "not confirmed"),
    ("rejected, retries left", doc(), own(row("rejected", attempts=REJECTED_RETRIES - 1)), False,
     SEND, "retrying a rejected document"),
    ("rejected, retries used, same payload", doc(), own(row("rejected", attempts=REJECTED_RETRIES)),
     False, SKIP, "already written"),
    ("rejected, retries used, replay asked", doc(), own(row("rejected", attempts=REJECTED_RETRIES)),
     True, SEND, "retrying a rejected document"),
    ("rejected, retries used, payload changed", doc(payload=CHANGED),
     own(row("rejected", attempts=REJECTED_RETRIES)), False, SEND, "changed"),
    ("written, same payload", doc(), own(row("done")), False, SKIP, "already written"),
    ("posted, same payload", doc(), own(row("posted")), False, SKIP, "already written"),
    ("adopted, payload changed", doc(payload=CHANGED), own(row("done", code=ADOPTED)), False,
     CONFLICT_DECISION, "was adopted from misa"),
    ("create, payload changed", doc("create", CHANGED), own(row("done")), False,
     SKIP, "create never updates"),
    ("generated, payload changed", doc(payload=CHANGED), own(row("generated")), False,
     CONFLICT_DECISION, "changed in the source after it was generated"),
    ("posted, payload changed", doc(payload=CHANGED), own(row("posted")), False,
     CONFLICT_DECISION, "after it was posted"),
    ("in conflict, payload changed", doc(payload=CHANGED), own(row("conflict")), False,
     CONFLICT_DECISION, "after it was conflict"),
    ("queued, payload changed", doc(payload=CHANGED), own(row("queued")), False, SEND, "changed"),
    ("accepted, payload changed", doc(payload=CHANGED), own(row("accepted")), False,
     SEND, "changed"),
    # withdrawals (action delete)
    ("withdraw, already withdrawn", doc("delete", route="withdraw"),
     own(row("done", route="withdraw", action="delete"), row("done")), False,
     SKIP, "already withdrawn"),
    ("withdraw, nothing held", doc("delete", route="withdraw"), target(), False,
     SKIP, "nothing to withdraw"),
    ("withdraw, only a failed row", doc("delete", route="withdraw"), target(row("failed")), False,
     SKIP, "nothing to withdraw"),
    ("withdraw, held and changeable", doc("delete", route="withdraw"), target(row("queued")), False,
     SEND, "withdraw"),
    ("withdraw, held in conflict", doc("delete", route="withdraw"), target(row("conflict")), False,
     SEND, "withdraw"),
    ("withdraw, an earlier withdrawal unconfirmed", doc("delete", route="withdraw"),
     own(row("planned", route="withdraw", action="delete"), row("done")), False, SEND, "withdraw"),
    ("withdraw, an earlier withdrawal rejected", doc("delete", route="withdraw"),
     own(row("rejected", route="withdraw", action="delete"), row("done")), False,
     SEND, "withdraw"),
    ("withdraw, already posted", doc("delete", route="withdraw"), target(row("posted")), False,
     CONFLICT_DECISION, "was already posted in misa; it cannot be withdrawn"),
    ("withdraw, another record owns the key", doc("delete", route="withdraw"),
     target(row(source_id="2")), False, REFUSE, "already the document of record 2"),
]


@pytest.mark.parametrize("case, document, facts, retry, expected, words", TABLE,
                         ids=[r[0] for r in TABLE])
def test_decision_table(case, document, facts, retry, expected, words):
    decision, reason = decide(document, facts, retry)
    assert (decision, words in reason) == (expected, True), (case, decision, reason)


def test_the_same_facts_always_give_the_same_decision():
    facts = own(row("done"))
    assert decide(doc(payload=CHANGED), facts) == decide(doc(payload=CHANGED), facts)
    assert facts == own(row("done"))      # decide changes nothing it is given


def test_ledger_facts_fetch_what_decide_reads(tmp_path):
    store = open_store(str(tmp_path / "state.db"))
    try:
        new = doc()
        assert needs_same_target(new, None)
        assert ledger_facts(store, "t", new) == LedgerFacts(None, ())
        store.plan(LedgerWrite(RowRef("t", "orders", "sales_order", "DH_1"), "misa",
                               "sales_order", "upsert", "1", None, PAYLOAD, {}))
        facts = ledger_facts(store, "t", new)
        assert facts.entry is not None and facts.entry.state == "planned"
        assert facts.same_target == ()           # not read when the document has its own row
        withdraw = replace(new, route="withdraw", action="delete")
        assert [e.route for e in ledger_facts(store, "t", withdraw).same_target] == ["sales_order"]
        assert decide(new, facts) == (SEND, "not confirmed by an earlier run")
    finally:
        store.close()
