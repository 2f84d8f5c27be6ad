"""The ledger decision: what to do with one document a record produced, from what the ledger
already holds. ``decide`` is a pure function of the document and the ``LedgerFacts`` fetched
for it (``ledger_facts`` does the store queries), so the whole table is tested row by row
(tests/engine/test_decide_table.py; docs/maintainers/runs.md lists it).

- send: new, or changed (action upsert) and still changeable in the target, or unsettled
  (planned / failed in an earlier run), or rejected and worth retrying;
- skip: already written with the same payload (or action create), or nothing to withdraw;
- conflict: the target holds a version that can no longer change (generated / posted), or
  another route already wrote this document. Recorded once, shown by the summary and status;
- refuse: another record of the flow owns the key; the newcomer becomes a dead letter.
"""
from __future__ import annotations

from dataclasses import dataclass

from hexaflow.plan import Document
from hexaflow.state import ADOPTED, FINAL_IN_TARGET, LIVE, UNSETTLED, LedgerEntry, StateStore, \
    payload_hash

SEND, SKIP, CONFLICT_DECISION = "send", "skip", "conflict"
# The document's key already belongs to another record of the flow: the newcomer is refused
# (a conflict shown to the user and a dead letter), the owner's document stays as it is.
REFUSE = "refuse"
# A rejected document is sent again by the next runs up to this many attempts in all; after
# that only a changed payload or `hexaflow dlq replay` sends it again.
REJECTED_RETRIES = 3


@dataclass(frozen=True)
class LedgerFacts:
    """What the ledger holds about a document: ``entry``, its own row (flow, route, key), and
    ``same_target``, every row naming the same target document (connector, document, key).
    ``same_target`` is only read, and so only fetched, when there is no own row or the
    document is a withdrawal."""
    entry: LedgerEntry | None = None
    same_target: tuple[LedgerEntry, ...] = ()


def needs_same_target(doc: Document, entry: LedgerEntry | None) -> bool:
    return entry is None or doc.action == "delete"


def ledger_facts(store: StateStore, tenant: str, doc: Document) -> LedgerFacts:
    """The store queries behind ``decide``."""
    entry = store.entry(tenant, doc.flow, doc.route, doc.key)
    if not needs_same_target(doc, entry):
        return LedgerFacts(entry)
    return LedgerFacts(entry, tuple(store.entries_for_target(tenant, doc.connector, doc.document,
                                                             doc.key)))


def decide_with_store(store: StateStore, tenant: str, doc: Document,
                      retry_rejected: bool = False) -> tuple[str, str]:
    """``decide`` with the facts fetched from ``store``."""
    return decide(doc, ledger_facts(store, tenant, doc), retry_rejected)


def other_owner(doc: Document, facts: LedgerFacts) -> str | None:
    """The source record that already owns ``doc``'s key in this flow, when it is another one:
    two records must never share a document (the second would be lost, or overwrite the first)."""
    if facts.entry is not None:
        return facts.entry.source_id if facts.entry.source_id != doc.source_id else None
    for e in facts.same_target:
        if e.flow == doc.flow and not e.is_ensure and e.source_id != doc.source_id \
                and e.state in LIVE:
            return e.source_id
    return None


def decide(doc: Document, facts: LedgerFacts, retry_rejected: bool = False) -> tuple[str, str]:
    """(send | skip | conflict | refuse, reason) for one document, from what the ledger holds.
    A rejected document is sent again when its payload changed, by the next runs up to
    REJECTED_RETRIES attempts, and whenever asked (``retry_rejected``: ``dlq replay``)."""
    owner = other_owner(doc, facts)
    if owner is not None:
        return REFUSE, (f"{doc.key} is already the document of record {owner} (route "
                        f"{doc.route}); record {doc.source_id} renders the same key, so it is "
                        f"not written: make the route's key name its record (e.g. "
                        f"<<order.id>>), or declare what identifies a record in source.unique")
    if doc.action == "delete":
        return _decide_withdrawal(doc, facts)
    entry = facts.entry
    if entry is not None:
        return _decide_again(doc, entry, retry_rejected)
    others = [e for e in facts.same_target
              if e.route != doc.route and not e.is_ensure and e.action != "delete"
              and e.state in LIVE]
    if others:
        return CONFLICT_DECISION, (f"{doc.key} was already written by route {others[0].route} "
                                   f"(flow {others[0].flow}); route {doc.route} would change it: "
                                   f"make the two routes' `when` conditions exclusive")
    return SEND, "new"


def _decide_withdrawal(doc: Document, facts: LedgerFacts) -> tuple[str, str]:
    entry = facts.entry
    if entry is not None and entry.state not in UNSETTLED and entry.state != "rejected":
        return SKIP, "already withdrawn"
    held = [e for e in facts.same_target
            if e.action != "delete" and e.state in LIVE + ("conflict",)]
    if not held:
        return SKIP, "nothing to withdraw"
    final = [e for e in held if e.state in FINAL_IN_TARGET]
    if final:
        return CONFLICT_DECISION, (f"{doc.key} was already {final[0].state} in "
                                   f"{doc.connector}; it cannot be withdrawn — reverse it by hand")
    return SEND, "withdraw"


def _decide_again(doc: Document, entry: LedgerEntry, retry_rejected: bool) -> tuple[str, str]:
    """A document the ledger already holds a row for (this flow, route and key)."""
    if entry.state in UNSETTLED:
        return SEND, "not confirmed by an earlier run"
    if entry.state == "rejected" and (retry_rejected or entry.attempts < REJECTED_RETRIES):
        # The cause may lie outside the payload (a product or customer created since).
        return SEND, "retrying a rejected document"
    if entry.payload_hash == payload_hash(doc.payload):
        return SKIP, "already written"
    if entry.code == ADOPTED:
        return CONFLICT_DECISION, (f"{doc.key} was adopted from {doc.connector} (hexaflow "
                                   f"adopt) as the flow gave it then, and has changed since; "
                                   f"hexaflow cannot tell what {doc.connector} holds, so it "
                                   f"does not send it: compare it there, change it by hand")
    if doc.action == "create":
        return SKIP, "already written (create never updates)"
    if entry.state in FINAL_IN_TARGET or entry.state == "conflict":
        return CONFLICT_DECISION, (f"{doc.key} changed in the source after it was "
                                   f"{entry.state} in {doc.connector}; change it by hand")
    return SEND, "changed"
