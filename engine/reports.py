"""What the state store can tell a person: ``status``, ``trace`` and the dead-letter commands.

All of it reads the ledger; only ``dlq replay`` writes, through the same runner as a run.
Nothing here prints payload values that could hold secrets: payloads are built from records,
never from credentials.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from decimal import Decimal
from typing import Callable

from hexaflow import queue_view
from hexaflow.runner import (LOCK_TTL, Connectors, FlowError, RunContext, RunSummary,
                             load_plan, poll_results, process_records, with_pending_stock)
from hexaflow.state import StateStore
from hexaflow.tenants import Tenant, flow_of


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def flows_in(store: StateStore, tenant: str) -> list[str]:
    rows = store.db.execute(
        "SELECT flow FROM ledger WHERE tenant=? UNION SELECT flow FROM cursors WHERE tenant=? "
        "UNION SELECT flow FROM runs WHERE tenant=? UNION SELECT flow FROM dead_letters "
        "WHERE tenant=? ORDER BY 1", (tenant,) * 4)
    return [r[0] for r in rows]


def status_text(store: StateStore, tenant: str) -> str:
    """Per flow its cursor, last run, documents and dead letters; then the tenant's jobs when
    the store holds a job queue (flows run by ``hexaflow worker``)."""
    text = _flows_text(store, tenant)
    queues = queue_view.flow_queues(store, tenant)
    return text if queues is None else text + queue_view.queue_text(queues)


def workers_status_text(store: StateStore) -> str:
    """The job queue's workers and their heartbeats ("" without a job queue): once for all
    tenants, since a worker runs any tenant's jobs."""
    found = queue_view.workers(store)
    return "" if found is None else queue_view.workers_text(found)


def _flows_text(store: StateStore, tenant: str) -> str:
    flows = flows_in(store, tenant)
    if not flows:
        return f"no runs yet for tenant {tenant!r} (state: {store.path})\n"
    out = []
    for flow in flows:
        cursor = store.get_cursor(tenant, flow)
        runs = store.runs(tenant, flow, limit=1)
        out.append(f"{flow}: cursor {cursor or '-'}")
        if runs:
            run = runs[0]
            summary = json.loads(run["summary"] or "{}")
            out.append(f"  last run #{run['id']} {run['status']} at {_when(run['started_at'])}: "
                       f"read {summary.get('records', '?')}, failed {summary.get('failed_records', '?')}")
        entries = store.entries(tenant, flow)
        states = Counter(e.state for e in entries)
        if states:
            out.append("  documents: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
        letters = store.dead_letters(tenant, flow)
        out.append(f"  dead letters: {len(letters)} open" + (" (hexaflow dlq list)" if letters else ""))
        conflicts = [e for e in entries if e.state == "conflict"]
        for e in conflicts:
            out.append(f"  conflict {e.key} ({e.route}, {e.source_id}): {e.message}")
    return "\n".join(out) + "\n"


def trace_text(store: StateStore, tenant: str, ref: str) -> str:
    """Every document of a source record (by its id) or with a document code."""
    entries = [e for e in store.entries(tenant) if e.source_id == ref or e.key == ref]
    if not entries:
        return f"nothing recorded for {ref!r} (tenant {tenant})\n"
    out = []
    for e in entries:
        out.append(f"{e.key}  flow {e.flow}  route {e.route}  {e.connector}/{e.document} "
                   f"{e.action}  state {e.state}" + (f"  target {e.target_ref}" if e.target_ref else ""))
        out.append(f"  record {e.source_id}" + (f" version {e.source_version}" if e.source_version else ""))
        for at, state, detail in store.events(tenant, e.flow, e.route, e.key):
            out.append(f"    {_when(at)}  {state}" + (f"  {detail}" if detail else ""))
    for letter in store.dead_letters(tenant):
        if letter["source_id"] == ref or letter["key"] == ref:
            out.append(f"dead letter #{letter['id']} ({letter['flow']}): {letter['reason']}")
    return "\n".join(out) + "\n"


def dlq_list_text(store: StateStore, tenant: str, flow: str | None) -> str:
    letters = store.dead_letters(tenant, flow)
    if not letters:
        return "no open dead letters\n"
    return "".join(f"#{d['id']}  {d['flow']}  record {d['source_id']}"
                   + (f"  {d['route']} {d['key']}" if d["route"] else "")
                   + f"  {_when(d['created_at'])}\n    {d['reason']}\n" for d in letters)


def dlq_show_text(store: StateStore, tenant: str, letter_id: int) -> str:
    letter = next((d for d in store.dead_letters(tenant) if d["id"] == letter_id), None)
    if letter is None:
        raise FlowError(f"no open dead letter #{letter_id} (hexaflow dlq list shows them)")
    lines = [f"dead letter #{letter['id']}  flow {letter['flow']}  record {letter['source_id']}",
             f"reason: {letter['reason']}"]
    if letter["route"]:
        lines.append(f"document: {letter['key']} (route {letter['route']})")
    for name in ("record", "payload"):
        if letter[name]:
            value = json.loads(letter[name], parse_float=Decimal)
            lines.append(f"{name}:\n" + json.dumps(value, ensure_ascii=False, indent=2, default=str))
    return "\n".join(lines) + "\n"


def dlq_drop(store: StateStore, tenant: str, letter_id: int) -> None:
    cur = store.db.execute("UPDATE dead_letters SET status='dropped' WHERE tenant=? AND id=? "
                           "AND status='open'", (tenant, letter_id))
    if cur.rowcount != 1:
        raise FlowError(f"no open dead letter #{letter_id} (hexaflow dlq list shows them)")


def dlq_replay(store: StateStore, one: Tenant, flow_file: str, letter_ids: list[int] | None,
               report: Callable[[str], None]) -> RunSummary:
    """Map the dead-lettered records again with the flow as it is now, and write what they
    produce; the ledger keeps it exactly once."""
    tenant = one.name
    plan = load_plan(flow_of(one, flow_file))
    config = one.config()
    letters = [d for d in store.dead_letters(tenant, plan.name)
               if letter_ids is None or d["id"] in letter_ids]
    records, seen = [], set()
    for letter in letters:
        if letter["record"] and letter["source_id"] not in seen:
            seen.add(letter["source_id"])
            records.append(json.loads(letter["record"], parse_float=Decimal))
    summary = RunSummary(plan.name)
    if not records:
        return summary
    fence = store.acquire_lock(tenant, plan.name, LOCK_TTL)
    if fence is None:
        raise FlowError(f"flow {plan.name!r} is running; replay when it has finished")
    connectors = Connectors(tenant, plan.base_dir, config)
    try:
        ctx = RunContext(plan, tenant, store, connectors, summary, fence=fence, report=report,
                         retry_rejected=True)
        process_records(with_pending_stock(ctx, poll=True), records)
        summary.records = len(records)
        poll_results(plan, tenant, store, connectors, summary)
    finally:
        connectors.close()
        store.release_lock(tenant, plan.name, fence)
    return summary
