"""Results that arrive after the send: polling the targets for documents still moving
(queued → accepted → generated → posted), settling a run's queued documents, and applying
outcomes from a poll or a callback to the ledger."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Callable, Iterable

from hexaflow.connector import CONFLICT, REJECTED, AsyncResult
from hexaflow.ledger_rows import DeadLetter
from hexaflow.plan import Plan
from hexaflow.runcontext import Connectors, RunContext
from hexaflow.state import StateStore
from hexaflow.summary import RunSummary

# Documents still moving in the target (queued → accepted → generated → posted) are polled
# while they changed within this many seconds; older ones are left to callbacks.
POLL_WINDOW_S = 30 * 86400


def poll_results(plan: Plan, tenant: str, store: StateStore, connectors: Connectors,
                 summary: RunSummary | None = None,
                 report: Callable[[str], None] | None = None) -> int:
    """One pass over this flow's documents still moving in their target (queued, accepted,
    generated): apply what the targets know now. Returns how many are still queued."""
    summary = summary or RunSummary(plan.name)
    in_motion = store.refs_in_motion(tenant, plan.name, store.now() - POLL_WINDOW_S)
    for name, refs in in_motion.items():
        apply_async_results(store, tenant, name, connectors.get(name).poll(refs), summary, report)
    return store.count(tenant, plan.name, "queued")


def settle(ctx: RunContext) -> int:
    """Poll for the results of this run's queued documents for a short while (asynchronous
    targets validate within seconds), so the run ends knowing what was accepted. Bounded by
    HEXAFLOW_SETTLE_SECONDS (default 5; 0 polls once). Returns how many are still queued."""
    deadline = time.monotonic() + ctx.settings.settle_seconds
    while True:
        queued = poll_results(ctx.plan, ctx.tenant, ctx.store, ctx.connectors, ctx.summary,
                              ctx.report)
        if not queued or time.monotonic() >= deadline:
            return queued
        time.sleep(0.25)


def with_pending_stock(ctx: RunContext, poll: bool) -> RunContext:
    """``ctx`` with the stock that documents not yet final in the source's system will still
    move (the plan's ``pending_stock``), when the flow reads it. With ``poll``, the documents
    holding that stock (of every flow) are polled first, so that one posted since is no longer
    held before the source's balance is read: a posting the poll saw is in the balance read
    after it, so stock is never offered twice; one made between the poll and the read is
    counted twice until the next run (docs/state.md)."""
    if not ctx.plan.reads_pending_stock:
        return ctx
    name = ctx.plan.source.connector
    if poll:
        refs = ctx.store.holding_refs(ctx.tenant, name)
        if refs:
            apply_async_results(ctx.store, ctx.tenant, name, ctx.connectors.get(name).poll(refs),
                                None, ctx.report)
    return replace(ctx, plan=ctx.plan.with_pending_stock(ctx.store.pending_stock(ctx.tenant, name)))


def apply_async_results(store: StateStore, tenant: str, connector: str,
                        results: Iterable[AsyncResult],
                        summary: RunSummary | None = None,
                        report: Callable[[str], None] | None = None) -> int:
    """Apply later outcomes of writes (from a poll or a callback) to the ledger, only
    forward; a rejection becomes a dead letter with the target's code and message, and a
    rejection or conflict is reported once (when the row changes). Returns how many rows
    changed (a count, not the rows: a poll may settle every document of a long run)."""
    changed = 0
    with store.transaction():       # one commit for a poll's results, not one per document
        for result in results:
            for e in store.apply_result(tenant, connector, result.target_ref, result.status,
                                        result.code, result.message):
                changed += 1
                detail = f"{result.code or ''} {result.message or ''}".strip()
                if result.status == REJECTED:
                    reason = f"{connector} rejected {e.key}: {detail}"
                    store.dead_letter(DeadLetter(tenant, e.flow, e.source_id, reason, None,
                                                 e.route, e.key, json.loads(e.payload)))
                    if summary is not None:
                        summary.count(e.route, "rejected")
                    if report is not None:
                        report(f"flow {e.flow}, record {e.source_id}: route {e.route}: {reason}")
                elif result.status == CONFLICT:
                    if summary is not None:
                        summary.count(e.route, "conflict")
                    if report is not None:
                        report(f"flow {e.flow}, record {e.source_id}: route {e.route}: conflict: "
                               f"{connector} cannot change {e.key}: {detail} — handle it by hand")
    return changed
