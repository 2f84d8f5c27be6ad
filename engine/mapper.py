"""Mapping a page of records: evaluate each record, decide each of its documents against the
ledger (``decide``), and hand what must be sent to the writer (in a dry run: to ``emit``)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from hexaflow.cursor import Page
from hexaflow.decide import CONFLICT_DECISION, REFUSE, SKIP, decide, ledger_facts
from hexaflow.functions import failure_reason
from hexaflow.ledger_rows import DeadLetter, ledger_write
from hexaflow.plan import Document, MappingError
from hexaflow.runcontext import RunContext
from hexaflow.state import LIVE, LedgerEntry
from hexaflow.writer import Writer


def history_of(entries: Iterable[LedgerEntry]) -> dict[str, dict[str, Any]]:
    """route → {key, state, keys} for documents the target holds (or held in conflict): the
    latest one, and the keys of all of them (a route with `each` writes several)."""
    hist: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.state in LIVE or e.state == "conflict":
            keys = hist.get(e.route, {}).get("keys", [])
            hist[e.route] = {"key": e.key, "state": e.state, "keys": keys + [e.key]}
    return hist


def map_records(ctx: RunContext, page: Page, writer: Writer) -> None:
    """Map one page's records, decide each document against the ledger, hand what must be
    sent to the writer (in a dry run: print it)."""
    plan, tenant, store, summary = ctx.plan, ctx.tenant, ctx.store, ctx.summary
    records = page.records
    ids: list[str | None] = []
    for record in records:
        try:
            ids.append(plan.record_id(record))
        except MappingError:
            ids.append(None)
    present = [i for i in ids if i is not None]
    known = store.entries_for_sources(tenant, plan.name, present)
    letters = set() if ctx.dry_run else store.open_dead_letter_sources(tenant, plan.name, present)
    alias = plan.source.alias
    for index, (record, source_id) in enumerate(zip(records, ids)):
        label = f"{alias} {source_id}" if source_id else f"{alias} #{summary.records + index + 1}"
        try:
            earlier = known.get(source_id, []) if source_id is not None else []
            outcome = plan.evaluate(record, history_of(earlier), tenant)
        except Exception as exc:      # whatever the record holds, it fails alone (a dead letter)
            reason = str(exc) if isinstance(exc, MappingError) else failure_reason(exc)
            summary.failed_records += 1
            ctx.report(f"{label}: {reason}")
            if not ctx.dry_run:
                store.dead_letter(DeadLetter(tenant, plan.name, source_id or f"#{index}", reason,
                                             record))
            continue
        if source_id in letters:      # it maps now: its mapping failures are resolved
            store.resolve_dead_letters(tenant, plan.name, source_id)
        for route in outcome.routes:
            summary.count(route, "matched")
        for doc in outcome.documents:
            _handle_document(ctx, writer, page, index, doc, label)


def _handle_document(ctx: RunContext, writer: Writer, page: Page, index: int, doc: Document,
                     label: str) -> None:
    summary, store = ctx.summary, ctx.store
    if writer.holds(doc):
        # The same document is already on its way in this run (the record was read
        # twice): let the ledger learn its outcome before deciding again.
        writer.finish()
    decision, reason = decide(doc, ledger_facts(store, ctx.tenant, doc), ctx.retry_rejected)
    if decision == SKIP:
        summary.count(doc.route, "skipped")
        return
    if decision == REFUSE:        # the record loses this document: the run failed
        summary.count(doc.route, "conflict")
        summary.failed_records += 1
        ctx.report(f"{label}: route {doc.route}: conflict: {reason}")
        if not ctx.dry_run:
            store.dead_letter(DeadLetter(ctx.tenant, ctx.flow, doc.source_id, reason,
                                         page.records[index], doc.route, doc.key, doc.payload))
        return
    if decision == CONFLICT_DECISION:
        summary.count(doc.route, "conflict")
        ctx.report(f"{label}: route {doc.route}: conflict: {reason}")
        if not ctx.dry_run:
            store.record_decision(ledger_write(ctx.tenant, doc, with_params=False), "conflict",
                                  reason, ctx.fence)
        return
    for ens in doc.ensure:
        if writer.holds(ens) or _ensure_exists(ctx, ens):
            continue
        _hand_over(ctx, writer, page, index, ens)
    _hand_over(ctx, writer, page, index, doc)


def _hand_over(ctx: RunContext, writer: Writer, page: Page, index: int, doc: Document) -> None:
    if not ctx.dry_run:
        writer.add(page, index, doc)
        return
    ctx.summary.count(doc.route, "would_write")
    if ctx.emit:
        ctx.emit({"route": doc.route, "target": f"{doc.connector}/{doc.document}",
                  "action": doc.action, "key": doc.key, "payload": doc.payload})


def _ensure_exists(ctx: RunContext, ens: Document) -> bool:
    rows = ctx.store.entries_for_target(ctx.tenant, ens.connector, ens.document, ens.key)
    if any(r.state in LIVE for r in rows):
        return True
    if ctx.connectors.get(ens.connector).exists(ens.document, ens.key):
        if not ctx.dry_run:
            ctx.store.record_decision(replace(ledger_write(ctx.tenant, ens, with_params=False), ensure=True),
                                      "done", "already in the target", ctx.fence)
        return True
    return False
