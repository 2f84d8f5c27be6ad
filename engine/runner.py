"""Running a flow: read pages, map records, decide what to write, write in batches, record.

``run_flow`` is the unit a scheduler or worker calls: it resumes from the flow's cursor, stops
after its budget, and says whether more is left. ``hexaflow run`` is run_cli.py.

The parts of a run (docs/maintainers/runs.md), each in its own module, all given one
``RunContext`` (runcontext.py):
- readahead.py reads the source's pages ahead of the mapping;
- mapper.py maps a page's records and asks decide.py (a pure function of the document and the
  ledger facts) whether to send, skip, refuse or record a conflict;
- writer.py sends documents in batches and records their outcomes in the ledger;
- cursor.py moves the flow's cursor past pages whose records are all handled;
- results.py polls the targets for later outcomes and settles the run;
- summary.py counts what happened; environment.py reads the settings.
"""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, TypedDict, Unpack

from hexaflow.cursor import LOCK_TTL, CursorKeeper, Page
from hexaflow.decide import CONFLICT_DECISION, REFUSE, REJECTED_RETRIES, SEND, SKIP, decide_with_store
from hexaflow.environment import run_settings
from hexaflow.lookups import read_connector_table
from hexaflow.errors import FlowError
from hexaflow.mapper import history_of, map_records
from hexaflow.plan import Document, Plan, compile_plan
from hexaflow.problems import ERROR, Problem
from hexaflow.readahead import ReadAhead
from hexaflow.results import POLL_WINDOW_S, apply_async_results, poll_results, settle, with_pending_stock
from hexaflow.runcontext import Connectors, RunContext
from hexaflow.spec import load_spec
from hexaflow.state import StateStore
from hexaflow.summary import Budget, RunSummary
from hexaflow.writer import Writer
from hexaflow.yamlload import SpecSyntaxError

# Names other modules (and plugins) import from here.
__all__ = ["CONFLICT_DECISION", "EXIT_CONFIG", "EXIT_OK", "EXIT_RECORDS_FAILED", "LOCK_TTL",
           "POLL_WINDOW_S", "REFUSE", "REJECTED_RETRIES", "SEND", "SKIP", "Budget", "Connectors",
           "FlowError", "RunContext", "RunSummary", "apply_async_results", "decide_with_store",
           "history_of", "load_plan", "poll_results", "process_records", "resend_unsettled",
           "resolve_flow_path", "run_flow", "with_pending_stock"]

EXIT_OK, EXIT_CONFIG, EXIT_RECORDS_FAILED = 0, 1, 2


# --------------------------------------------------------------------------- loading
def resolve_flow_path(name: str) -> Path:
    """A flow path as given, else ./mappings/<name>, else the packaged mappings/<name>."""
    given = Path(name)
    if given.exists():
        return given
    if not given.is_absolute() and len(given.parts) == 1:
        local = Path("mappings") / given
        if local.exists():
            return local
        from importlib.resources import files
        packaged = Path(str(files("hexaflow.mappings"))) / given
        if packaged.exists():
            return packaged
    raise FlowError(f"flow file not found: {name} (looked in the current folder and ./mappings/)")


def load_plan(path: Path) -> Plan:
    try:
        spec = load_spec(path)
    except SpecSyntaxError as exc:
        raise FlowError(f"{path}: the flow is not valid; run `hexaflow validate {path}`",
                        [Problem(exc.file, exc.line, exc.col, exc.message, exc.hint)]) from None
    plan, problems = compile_plan(spec)
    errors = [p for p in problems if p.severity == ERROR]
    if plan is None or errors:
        raise FlowError(f"{path}: the flow is not valid ({len(errors)} errors); "
                        f"run `hexaflow validate {path}`", errors)
    return plan


# --------------------------------------------------------------------------- running
class RunOptions(TypedDict, total=False):
    """The optional parts of ``run_flow``. ``emit`` receives each document that is (or, in a
    dry run, would be) sent; ``report`` one line per failed record; ``progress`` the summary
    after each page."""
    dry_run: bool
    limit: int | None
    emit: Callable[[dict[str, Any]], None] | None
    report: Callable[[str], None] | None
    progress: Callable[[RunSummary], None] | None


def run_flow(plan: Plan, *, tenant: str, store: StateStore, connectors: Connectors,
             budget: Budget | None = None, **options: Unpack[RunOptions]) -> RunSummary:
    """Run ``plan`` once from its cursor, within ``budget``."""
    dry_run = bool(options.get("dry_run", False))
    ctx = RunContext(plan, tenant, store, connectors, RunSummary(plan.name, dry_run),
                     run_settings(), dry_run, emit=options.get("emit"))
    report = options.get("report")
    if report is not None:
        ctx = replace(ctx, report=report)
    read_connector_lookups(plan, connectors)
    if dry_run:
        _run_pages(ctx, options.get("limit"), budget, options.get("progress"))
        return ctx.summary
    refuse_a_lost_store(ctx)
    ctx = replace(ctx, fence=_lock(ctx))
    run_id = store.start_run(tenant, plan.name)
    status = "failed"
    started = store.now()      # the store's clock: rows are compared with it
    try:
        from hexaflow.keychanges import record_key_templates
        record_key_templates(store, tenant, plan)    # validate warns when one changes
        # Learn what the targets know (accepted, generated, ...) before deciding anything:
        # a document generated since the last run must not be sent again as a change.
        poll_results(plan, tenant, store, connectors, ctx.summary, ctx.report)
        _run_pages(ctx, options.get("limit"), budget, options.get("progress"))
        resend_unsettled(ctx, started)
        settle(ctx)
        status = "failed" if ctx.summary.failed else "ok"
    finally:
        store.finish_run(run_id, status, ctx.summary.as_dict())
        store.release_lock(tenant, plan.name, ctx.fence)
    return ctx.summary


def read_connector_lookups(plan: Plan, connectors: Connectors) -> None:
    """Fill the lookups a connector holds (e.g. the accounting system's items) with what it holds now."""
    for lookup in plan.connector_lookups:
        plan.tables[lookup.name] = read_connector_table(lookup, connectors.get(lookup.connector))


def _lock(ctx: RunContext) -> int:
    fence = ctx.store.acquire_lock(ctx.tenant, ctx.flow, LOCK_TTL)
    if fence is None:
        holder = ctx.store.lock_holder(ctx.tenant, ctx.flow)
        who = holder[0] if holder else "another run"
        raise FlowError(f"flow {ctx.flow!r} (tenant {ctx.tenant}) is already running ({who}); "
                        f"wait for it to finish, then run again (the lock of a run that "
                        f"crashed expires after {LOCK_TTL / 60:g} min)")
    return fence


def refuse_a_lost_store(ctx: RunContext) -> None:
    """A store that holds nothing of the tenant while a target already holds documents the
    tenant's runs wrote was lost (deleted, truncated, replaced): sending now would send every
    document again. Stop, and say how to adopt what the target holds."""
    if ctx.store.holds_tenant(ctx.tenant):
        return
    for name in ctx.plan.target_connectors():
        if ctx.connectors.get(name).written_before():
            raise FlowError(
                f"the state store {ctx.store.path} holds nothing for tenant {ctx.tenant!r}, but "
                f"{name} already holds documents that this tenant's runs wrote: the state store "
                f"was lost or replaced, and running now would send every document again. Restore "
                f"it from a backup (or point HEXAFLOW_STATE at the one in use), or adopt what "
                f"{name} holds: `hexaflow adopt {ctx.plan.file}` for each flow, then run again")


def _run_pages(ctx: RunContext, limit: int | None, budget: Budget | None,
               progress: Callable[[RunSummary], None] | None) -> None:
    ctx = with_pending_stock(ctx, poll=not ctx.dry_run)   # after the lock, before the source is read
    source, summary = ctx.plan.source, ctx.summary
    raw_cursor = ctx.store.get_cursor(ctx.tenant, ctx.flow)
    since = json.loads(raw_cursor) if raw_cursor is not None else None
    reader = ctx.connectors.get(source.connector)
    writer = Writer(ctx, ctx.settings.batch_delay)
    started = time.monotonic()
    pages = 0
    open_pages: deque[Page] = deque()
    cursor = CursorKeeper(ctx, since)
    read_ahead = ReadAhead(reader.read(source.resource, source.params, since,
                                       cursor_field=source.cursor),
                           ctx.settings.read_ahead, writer.wake_in)
    try:
        for page in read_ahead:
            if page is not None:
                records = page.records
                if limit is not None:
                    records = records[: max(0, limit - summary.records)]
                open_page = Page(records, page.cursor, len(records) == len(page.records))
                map_records(ctx, open_page, writer)
                summary.records += len(records)
                open_pages.append(open_page)
                pages += 1
            writer.flush()
            cursor.advance(open_pages)
            if page is None:
                continue
            if progress:
                progress(summary)
            if limit is not None and summary.records >= limit:
                summary.more_left = True
                break
            if budget and ((budget.max_pages and pages >= budget.max_pages) or
                           (budget.max_seconds and time.monotonic() - started >= budget.max_seconds)):
                summary.more_left = True
                break
        writer.finish()
        cursor.advance(open_pages)
    finally:
        read_ahead.close()
        writer.close()
    summary.cursor = cursor.value


def process_records(ctx: RunContext, records: list[Any]) -> None:
    """Map and write some records now, outside a paged run (``hexaflow dlq replay``)."""
    writer = Writer(replace(ctx, emit=None))
    try:
        map_records(replace(ctx, emit=None), Page(records, None, True), writer)
        writer.finish()
    finally:
        writer.close()


def resend_unsettled(ctx: RunContext, before: float) -> None:
    """Send again, as recorded, documents an earlier run planned but never saw confirmed (it
    crashed between the send and the ledger update, or the target failed) and that no route
    of this run wrote again. Deterministic keys and ids make the re-send land on the same
    document in the target."""
    stale = ctx.store.unsettled(ctx.tenant, ctx.flow, before)
    if not stale:
        return
    ctx.report(f"{ctx.flow}: sending again {len(stale)} document(s) not confirmed by an earlier run")
    writer = Writer(replace(ctx, emit=None))
    try:
        for e in stale:
            writer.add(None, -1, Document(e.flow, e.route, e.connector, e.document, e.action, e.key,
                                          json.loads(e.payload), json.loads(e.params or "{}"),
                                          e.source_id, e.source_version, (), e.is_ensure))
            writer.flush()
        writer.finish()
    finally:
        writer.close()
