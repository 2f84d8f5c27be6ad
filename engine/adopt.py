"""``hexaflow adopt FLOW``: rebuild a flow's ledger from what its targets already hold.

For a state store that was lost (deleted, truncated, replaced) while the target kept the
documents: a run refuses to start then (runner.refuse_a_lost_store), since it would send every
document again. Adopting reads every record of the source, maps it as a run would, asks each
target which of those documents it holds (``Connector.held``; each connector's page says how it
knows) and records the ones it holds in the ledger with the target's state. The next run
then sends only what the target lacks.

A record's documents depend on its history, which is what is being rebuilt: the record is
mapped with no history first, the documents the target holds become its history, and it is
mapped again until nothing new is found. Rows already in the ledger are kept (a store that lost
only its latest transactions is repaired too). docs/state.md, "A lost state store".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from hexaflow.connector import WriteItem
from hexaflow.functions import failure_reason
from hexaflow.ledger_rows import Outcome, ledger_write, row_ref
from hexaflow.plan import Document, Plan
from hexaflow.runner import LOCK_TTL, Connectors, FlowError, history_of
from hexaflow.state import ADOPTED, LIVE, SQLiteStore


@dataclass
class AdoptSummary:
    flow: str
    records: int = 0
    failed_records: int = 0
    adopted: Counter = field(default_factory=Counter)      # route → documents adopted
    kept: int = 0                                          # already in the ledger

    def render(self) -> str:
        lines = [f"{self.flow}: read {self.records} records, {self.failed_records} could not be "
                 f"mapped; {sum(self.adopted.values())} documents adopted, {self.kept} already "
                 f"in the ledger"]
        lines += [f"  {route}  adopted {count}" for route, count in sorted(self.adopted.items())]
        return "\n".join(lines) + "\n"


def adopt(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
          report: Callable[[str], None]) -> AdoptSummary:
    fence = store.acquire_lock(tenant, plan.name, LOCK_TTL)
    if fence is None:
        raise FlowError(f"flow {plan.name!r} (tenant {tenant}) is running; adopt when it has "
                        f"finished")
    run_id = store.start_run(tenant, plan.name)
    summary = AdoptSummary(plan.name)
    status = "failed"
    try:
        source = plan.source
        reader = connectors.get(source.connector)
        for page in reader.read(source.resource, source.params, None, cursor_field=source.cursor):
            summary.records += len(page.records)
            _adopt_page(_PageAdoption(plan, tenant, store, connectors, summary, fence, report),
                        page.records)
        status = "adopted"
    finally:
        store.finish_run(run_id, status, {"adopted": dict(summary.adopted),
                                          "records": summary.records})
        store.release_lock(tenant, plan.name, fence)
    return summary


@dataclass
class _PageAdoption:
    plan: Plan
    tenant: str
    store: SQLiteStore
    connectors: Connectors
    summary: AdoptSummary
    fence: int
    report: Callable[[str], None]


def _adopt_page(ctx: _PageAdoption, records: list[Any]) -> None:
    """Map the page's records until the documents the targets hold stop growing their history."""
    plan, store, tenant = ctx.plan, ctx.store, ctx.tenant
    ids: dict[int, str] = {}
    for index, record in enumerate(records):
        try:
            ids[index] = plan.record_id(record)
        except Exception as exc:
            ctx.summary.failed_records += 1
            ctx.report(f"{plan.source.alias} #{index + 1}: {failure_reason(exc)}")
    known = store.entries_for_sources(tenant, plan.name, list(ids.values()))
    history = {i: history_of(known.get(source_id, [])) for i, source_id in ids.items()}
    pending = set(ids)
    for _ in range(len(plan.routes) + 1):        # each round adds a route, or it ends
        found = _held_documents(ctx, {i: records[i] for i in pending}, history)
        pending = set()
        for index, doc, state in found:
            if doc.is_ensure:            # a prerequisite: recorded, not part of the history
                _record(ctx, doc, state)
                continue
            entry = history[index].get(doc.route) or {}
            if doc.key in (entry.get("keys") or []):
                continue
            history[index][doc.route] = {"key": doc.key, "state": state,
                                         "keys": (entry.get("keys") or []) + [doc.key]}
            _record(ctx, doc, state)
            pending.add(index)
        if not pending:
            return


def _held_documents(ctx: _PageAdoption, records: dict[int, Any],
                    history: dict[int, dict[str, Any]]) -> list[tuple[int, Document, str]]:
    """(record index, document, target state) for the documents the records map to now that
    the targets hold (documents and their ensured prerequisites)."""
    candidates: list[tuple[int, Document, str, str]] = []     # index, doc, connector, ref
    for index, record in records.items():
        try:
            outcome = ctx.plan.evaluate(record, history[index], ctx.tenant)
        except Exception as exc:     # the next run makes it a dead letter
            ctx.summary.failed_records += 1
            ctx.report(f"{ctx.plan.source.alias} #{index + 1}: {failure_reason(exc)}")
            continue
        for doc in outcome.documents:
            if doc.action == "delete":
                continue
            for item in (doc, *doc.ensure):
                ref = ctx.connectors.get(item.connector).target_ref(_write_item(item))
                if ref:
                    candidates.append((index, item, item.connector, ref))
    by_connector: dict[str, set[str]] = {}
    for _, _, name, ref in candidates:
        by_connector.setdefault(name, set()).add(ref)
    held = {name: ctx.connectors.get(name).held(refs) for name, refs in by_connector.items()}
    return [(index, doc, held[name][ref]) for index, doc, name, ref in candidates
            if held[name].get(ref) in LIVE]


def _write_item(doc: Document) -> WriteItem:
    return WriteItem("adopt", doc.document, doc.action, doc.key, doc.payload, doc.params)


def _record(ctx: _PageAdoption, doc: Document, state: str) -> None:
    """A ledger row for a document the target holds, unless the ledger has it already."""
    store, tenant = ctx.store, ctx.tenant
    if store.entry(tenant, doc.flow, doc.route, doc.key) is not None:
        ctx.summary.kept += 1
        return
    ref = ctx.connectors.get(doc.connector).target_ref(_write_item(doc))
    with store.transaction():
        store.plan(ledger_write(tenant, doc), ctx.fence)
        store.mark(row_ref(tenant, doc),
                   Outcome(state, ref, ADOPTED, f"adopted from {doc.connector} by hexaflow adopt",
                           attempted=False), ctx.fence)
    ctx.summary.adopted[doc.route] += 1
