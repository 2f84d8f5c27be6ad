"""Running a flow: read pages, map records, decide what to write, write in batches, record.

``run_flow`` is the unit a scheduler or worker calls: it resumes from the flow's cursor, stops
after its budget, and says whether more is left. ``run_command`` is ``hexaflow run``.

For every document a record produces, the ledger decides (``decide``):
- send: new, or changed (action upsert) and still changeable in the target, or unsettled
  (planned / failed in an earlier run);
- skip: already written with the same payload (or action create), or nothing to withdraw;
- conflict: the target holds a version that can no longer change (generated / posted), or
  another route already wrote this document. Recorded once, shown by the summary and status.
The ledger row is written (``planned``) before the send and updated with the result after it.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from hexaflow.errors import FlowError
from hexaflow.connector import (CONFLICT, DONE, FAILED, QUEUED, REJECTED, AsyncResult, Connector,
                                ConnectorContext, ConnectorError, WriteItem, WriteResult)
from hexaflow.functions import failure_reason
from hexaflow.plan import Document, MappingError, Plan, compile_plan
from hexaflow.problems import ERROR, Problem
from hexaflow.registry import get_connector
from hexaflow.spec import load_spec
from hexaflow.state import (ADOPTED, FINAL_IN_TARGET, LIVE, UNSETTLED, LedgerEntry, LostLock,
                            SQLiteStore, StateError, open_store, payload_hash, state_faults)
from hexaflow.yamlload import SpecSyntaxError

EXIT_OK, EXIT_CONFIG, EXIT_RECORDS_FAILED = 0, 1, 2
SEND, SKIP, CONFLICT_DECISION = "send", "skip", "conflict"
# The document's key already belongs to another record of the flow: the newcomer is refused
# (a conflict shown to the user and a dead letter), the owner's document stays as it is.
REFUSE = "refuse"
LOCK_TTL = 600.0
# A rejected document is sent again by the next runs up to this many attempts in all; after
# that only a changed payload or `hexaflow dlq replay` sends it again.
REJECTED_RETRIES = 3


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


# --------------------------------------------------------------------------- summary
@dataclass
class RunSummary:
    flow: str
    dry_run: bool = False
    records: int = 0
    failed_records: int = 0
    routes: dict[str, Counter] = field(default_factory=dict)
    more_left: bool = False
    cursor: Any = None
    errors: list[str] = field(default_factory=list)

    def count(self, route: str, outcome: str, n: int = 1) -> None:
        self.routes.setdefault(route, Counter())[outcome] += n

    @property
    def failed(self) -> bool:
        return self.failed_records > 0 or any(
            c[FAILED] or c[REJECTED] for c in self.routes.values())

    def as_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "dry_run": self.dry_run, "records": self.records,
                "failed_records": self.failed_records, "more_left": self.more_left,
                "routes": {r: dict(c) for r, c in self.routes.items()}}

    def render(self) -> str:
        head = " (dry run)" if self.dry_run else ""
        lines = [f"{self.flow}{head}: read {self.records} records, {self.failed_records} failed"
                 + (" (more left)" if self.more_left else "")]
        order = ("written", "would_write", "queued", "skipped", "conflict", "rejected", "failed", "matched")
        width = max([len(r) for r in self.routes] + [5])
        for route, counts in self.routes.items():
            parts = [f"{name} {counts[name]}" for name in order if counts.get(name)]
            lines.append(f"  {route:<{width}}  " + (", ".join(parts) or "nothing"))
        if not self.dry_run and (self.failed_records or any(c.get("rejected") for c in self.routes.values())):
            lines.append("kept as dead letters: `hexaflow dlq list` shows why; fix the data or the "
                         "flow, then `hexaflow dlq replay <flow file>`")
        return "\n".join(lines) + "\n"


@dataclass
class Budget:
    max_pages: int | None = None
    max_seconds: float | None = None


# --------------------------------------------------------------------------- deciding
def decide(store: SQLiteStore, tenant: str, doc: Document,
           retry_rejected: bool = False) -> tuple[str, str]:
    """(send | skip | conflict, reason) for one document, from what the ledger holds.
    A rejected document is sent again when its payload changed, by the next runs up to
    REJECTED_RETRIES attempts, and whenever asked (``dlq replay``)."""
    entry = store.entry(tenant, doc.flow, doc.route, doc.key)
    owner = _other_owner(store, tenant, doc, entry)
    if owner is not None:
        return REFUSE, (f"{doc.key} is already the document of record {owner} (route "
                        f"{doc.route}); record {doc.source_id} renders the same key, so it is "
                        f"not written: make the route's key name its record (e.g. "
                        f"<<order.id>>), or declare what identifies a record in source.unique")
    if doc.action == "delete":
        if entry is not None and entry.state not in UNSETTLED and entry.state != "rejected":
            return SKIP, "already withdrawn"
        held = [e for e in store.entries_for_target(tenant, doc.connector, doc.document, doc.key)
                if e.action != "delete" and e.state in LIVE + ("conflict",)]
        if not held:
            return SKIP, "nothing to withdraw"
        final = [e for e in held if e.state in FINAL_IN_TARGET]
        if final:
            return CONFLICT_DECISION, (f"{doc.key} was already {final[0].state} in "
                                       f"{doc.connector}; it cannot be withdrawn — reverse it by hand")
        return SEND, "withdraw"
    if entry is not None:
        digest = payload_hash(doc.payload)
        if entry.state in UNSETTLED:
            return SEND, "not confirmed by an earlier run"
        if entry.state == "rejected" and (retry_rejected or entry.attempts < REJECTED_RETRIES):
            # The cause may lie outside the payload (a product or customer created since).
            return SEND, "retrying a rejected document"
        if entry.payload_hash == digest:
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
    others = [e for e in store.entries_for_target(tenant, doc.connector, doc.document, doc.key)
              if e.route != doc.route and not e.is_ensure and e.action != "delete"
              and e.state in LIVE]
    if others:
        return CONFLICT_DECISION, (f"{doc.key} was already written by route {others[0].route} "
                                   f"(flow {others[0].flow}); route {doc.route} would change it: "
                                   f"make the two routes' `when` conditions exclusive")
    return SEND, "new"


def _other_owner(store: SQLiteStore, tenant: str, doc: Document,
                 entry: LedgerEntry | None) -> str | None:
    """The source record that already owns ``doc``'s key in this flow, when it is another one:
    two records must never share a document (the second would be lost, or overwrite the first)."""
    if entry is not None:
        return entry.source_id if entry.source_id != doc.source_id else None
    for e in store.entries_for_target(tenant, doc.connector, doc.document, doc.key):
        if e.flow == doc.flow and not e.is_ensure and e.source_id != doc.source_id \
                and e.state in LIVE:
            return e.source_id
    return None


def history_of(entries: Iterable[LedgerEntry]) -> dict[str, dict[str, Any]]:
    """route → {key, state, keys} for documents the target holds (or held in conflict): the
    latest one, and the keys of all of them (a route with `each` writes several)."""
    hist: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.state in LIVE or e.state == "conflict":
            keys = hist.get(e.route, {}).get("keys", [])
            hist[e.route] = {"key": e.key, "state": e.state, "keys": keys + [e.key]}
    return hist


# --------------------------------------------------------------------------- running
class Connectors:
    """Connector instances of one run, created on first use and closed at the end."""

    def __init__(self, tenant: str, base_dir: Path, config: dict[str, str] | None = None):
        self.tenant, self.base_dir = tenant, base_dir
        self.config = config if config is not None else dict(os.environ)
        self._open: dict[str, Connector] = {}

    def get(self, name: str) -> Connector:
        if name not in self._open:
            cls = get_connector(name)
            if cls is None:
                raise FlowError(f"unknown connector {name!r}")
            self._open[name] = cls(ConnectorContext(self.tenant, self.config, str(self.base_dir)))
        return self._open[name]

    def close(self) -> None:
        for connector in self._open.values():
            connector.close()
        self._open.clear()


class _Page:
    """A page being handled: its records, which of them are fully written, and how many of
    its documents still wait for an outcome (the cursor passes it only at zero)."""

    def __init__(self, records: list[Any], cursor: Any, whole: bool):
        self.records = records
        self.cursor = cursor
        self.whole = whole                   # all the page's records were taken (no --limit cut)
        self.handled = [True] * len(records)
        self.outstanding = 0


@dataclass
class _Item:
    page: _Page | None          # None: a document sent again from the ledger
    index: int                  # the record's index in its page
    doc: Document


class _ReadAhead:
    """Reads pages in a thread of its own, up to ``depth`` pages ahead of the mapping, so that
    waiting for the source's rate limit overlaps mapping and writing. ``depth`` 0 reads in the
    caller's thread. Iterating yields pages, or None when ``wake_in()`` seconds passed without
    one (the caller then flushes a batch that has waited long enough)."""

    _END = object()

    def __init__(self, pages: Iterator[Any], depth: int, wake_in: Callable[[], float | None]):
        self._pages, self._depth, self._wake_in = pages, depth, wake_in
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._thread: threading.Thread | None = None

    def _produce(self) -> None:
        try:
            for page in self._pages:
                if not self._offer(page):
                    return
            self._offer(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._offer(exc)
        finally:
            close = getattr(self._pages, "close", None)
            if close:
                close()

    def _offer(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        if self._depth <= 0:
            yield from self._pages
            return
        self._thread = threading.Thread(target=self._produce, name="hexaflow-read-ahead",
                                        daemon=True)
        self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=self._wake_in())
            except queue.Empty:
                yield None
                continue
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _env_number(name: str, default: float, example: str = "a number of seconds; e.g. 5") -> float:
    """The number in the environment variable ``name`` (``default`` when unset); FlowError
    naming the variable when it is not a number of 0 or more."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise FlowError(f"{name}={raw}: not {example}")
    return value


ENV_NUMBERS = (("HEXAFLOW_SETTLE_SECONDS", 5.0, "a number of seconds; e.g. 5"),
               ("HEXAFLOW_BATCH_DELAY", 0.5, "a number of seconds; e.g. 0.5"),
               ("HEXAFLOW_READ_AHEAD", 2.0, "a number of pages; e.g. 2"))


def _batch_delay() -> float:
    return _env_number(*ENV_NUMBERS[1])


class _Writer:
    """Documents of a run waiting for their batch, and the one batch in flight.

    The ledger row of every document is written (planned) in one transaction before its batch
    leaves, and the outcomes in one transaction after; the send itself runs in a worker thread
    so that the next pages are mapped meanwhile. All ledger work stays in the caller's thread.
    A batch leaves when it is full (the target connector's ``batch_size``), when its oldest
    document has waited ``delay`` seconds, or when the run ends.
    """

    def __init__(self, plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
                 summary: RunSummary, emit: Callable[[dict[str, Any]], None] | None,
                 report: Callable[[str], None], fence: int | None, delay: float = float("inf")):
        self.plan, self.tenant, self.store, self.connectors = plan, tenant, store, connectors
        self.summary, self.emit, self.report, self.fence = summary, emit, report, fence
        self.delay = delay
        self.waiting: list[_Item] = []
        self.waiting_since = 0.0
        self.in_flight: tuple[list[_Item], Future] | None = None
        self.targets: set[tuple[str, str, str]] = set()    # (connector, document, key) not yet settled
        self._pool: ThreadPoolExecutor | None = None

    def holds(self, doc: Document) -> bool:
        """Whether a document with this target key waits or is in flight in this run."""
        return (doc.connector, doc.document, doc.key) in self.targets

    def add(self, page: _Page | None, index: int, doc: Document) -> None:
        if not self.waiting:
            self.waiting_since = time.monotonic()
        self.waiting.append(_Item(page, index, doc))
        self.targets.add((doc.connector, doc.document, doc.key))
        if page is not None:
            page.outstanding += 1

    def wake_in(self) -> float | None:
        """Seconds until the waiting documents are due (None: nothing waits)."""
        if not self.waiting:
            return None
        return max(0.0, self.waiting_since + self.delay - time.monotonic())

    def _full_size(self) -> int:
        return min(max(1, self.connectors.get(i.doc.connector).batch_size) for i in self.waiting)

    def flush(self, force: bool = False) -> None:
        """Send every full batch; the rest too when ``force`` or when it has waited enough."""
        if self.in_flight is not None and self.in_flight[1].done():
            self._collect()          # outcomes recorded early let the cursor move on
        while self.waiting:
            size = self._full_size()
            if len(self.waiting) < size and not force and self.wake_in():
                return
            batch, self.waiting = self.waiting[:size], self.waiting[size:]
            self.waiting_since = time.monotonic()
            self._send(batch)

    def finish(self) -> None:
        """Send everything waiting and wait for every outcome."""
        self.flush(force=True)
        self._collect()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _send(self, batch: list[_Item]) -> None:
        self._collect()          # one batch in flight at a time
        flow = self.plan.name
        with self.store.transaction():
            for item in batch:
                doc = item.doc
                self.store.plan(self.tenant, flow, doc.route, doc.key, connector=doc.connector,
                                document=doc.document, action=doc.action,
                                source_id=doc.source_id, source_version=doc.source_version,
                                payload=doc.payload, params=doc.params, fence=self.fence,
                                ensure=doc.is_ensure)
        by_connector: dict[str, list[WriteItem]] = {}
        for n, item in enumerate(batch):
            doc = item.doc
            by_connector.setdefault(doc.connector, []).append(
                WriteItem(str(n), doc.document, doc.action, doc.key, doc.payload, doc.params))
        calls = [(self.connectors.get(name), items) for name, items in by_connector.items()]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hexaflow-write")
        self.in_flight = (batch, self._pool.submit(_write_all, calls, self.report))

    def _collect(self) -> None:
        if self.in_flight is None:
            return
        batch, future = self.in_flight
        self.in_flight = None
        results = future.result()        # a ConnectorError (nothing can work) stops the run
        self._record(batch, results)

    def _record(self, batch: list[_Item], results: dict[str, WriteResult]) -> None:
        flow, summary, report = self.plan.name, self.summary, self.report
        letters = self.store.open_dead_letter_sources(
            self.tenant, flow, sorted({item.doc.source_id for item in batch}))
        with self.store.transaction():
            for n, item in enumerate(batch):
                doc = item.doc
                result = results.get(str(n))
                if result is None:
                    state, code, message = FAILED, None, f"{doc.connector} returned no result for this document"
                else:
                    state, code, message = result.status, result.code, result.message
                self.store.mark(self.tenant, flow, doc.route, doc.key, state,
                                target_ref=result.target_ref if result else None, code=code,
                                message=message, fence=self.fence)
                self.targets.discard((doc.connector, doc.document, doc.key))
                if item.page is not None:
                    item.page.outstanding -= 1
                if self.emit:
                    self.emit({"route": doc.route, "target": f"{doc.connector}/{doc.document}",
                               "action": doc.action, "key": doc.key, "status": state})
                label = f"{self.plan.source.alias} {doc.source_id}"
                if state in (DONE, QUEUED):
                    summary.count(doc.route, "written" if state == DONE else "queued")
                    if doc.source_id in letters:     # a rejected document now written
                        self.store.resolve_dead_letters(self.tenant, flow, doc.source_id,
                                                        doc.route, doc.key)
                elif state == REJECTED:
                    summary.count(doc.route, "rejected")
                    reason = f"{doc.connector} rejected {doc.key}: {code or ''} {message or ''}".strip()
                    report(f"{label}: route {doc.route}: {reason}")
                    record = item.page.records[item.index] if item.page is not None else None
                    self.store.dead_letter(self.tenant, flow, doc.source_id, reason, record=record,
                                           route=doc.route, key=doc.key, payload=doc.payload)
                elif state == CONFLICT:
                    summary.count(doc.route, "conflict")
                    report(f"{label}: route {doc.route}: conflict: {message or ''}")
                else:
                    summary.count(doc.route, "failed")
                    report(f"{label}: route {doc.route}: not written, will retry: {message or state}")
                    if item.page is not None:
                        item.page.handled[item.index] = False


def _write_all(calls: list[tuple[Connector, list[WriteItem]]],
               report: Callable[[str], None]) -> dict[str, WriteResult]:
    """The send of one batch (runs in the writer thread): every connector's part, in order."""
    results: dict[str, WriteResult] = {}
    for connector, items in calls:
        try:
            results.update((r.ref, r) for r in connector.write(items))
        except ConnectorError:
            raise
        except Exception as exc:  # a connector bug or an unexpected failure: retry next run
            report(f"{connector.name}: the batch of {len(items)} documents failed: {exc}")
    return results


def run_flow(plan: Plan, *, tenant: str, store: SQLiteStore, connectors: Connectors,
             dry_run: bool = False, limit: int | None = None, budget: Budget | None = None,
             emit: Callable[[dict[str, Any]], None] | None = None,
             report: Callable[[str], None] | None = None,
             progress: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Run ``plan`` once from its cursor. ``emit`` receives each document that is (or, in a
    dry run, would be) sent; ``report`` receives one line per failed record."""
    summary = RunSummary(plan.name, dry_run)
    report = report or (lambda line: None)
    fence = None
    if not dry_run:
        refuse_a_lost_store(plan, tenant, store, connectors)
        fence = store.acquire_lock(tenant, plan.name, LOCK_TTL)
        if fence is None:
            holder = store.lock_holder(tenant, plan.name)
            who = holder[0] if holder else "another run"
            raise FlowError(f"flow {plan.name!r} (tenant {tenant}) is already running ({who}); "
                            f"wait for it to finish, then run again (the lock of a run that "
                            f"crashed expires after {LOCK_TTL / 60:g} min)")
    run_id = None if dry_run else store.start_run(tenant, plan.name)
    status = "failed"
    started = time.time()
    try:
        if not dry_run:
            from hexaflow.keychanges import record_key_templates
            record_key_templates(store, tenant, plan)    # validate warns when one changes
            # Learn what the targets know (accepted, generated, ...) before deciding anything:
            # a document generated since the last run must not be sent again as a change.
            poll_results(plan, tenant, store, connectors, summary, report)
        _run_pages(plan, tenant, store, connectors, summary, dry_run, limit, budget, emit,
                   report, progress, fence)
        if not dry_run:
            resend_unsettled(plan, tenant, store, connectors, summary, report, fence, started)
            settle(plan, tenant, store, connectors, summary, report)
        status = "failed" if summary.failed else "ok"
    finally:
        if not dry_run:
            store.finish_run(run_id, status, summary.as_dict())
            store.release_lock(tenant, plan.name, fence)
    return summary


def refuse_a_lost_store(plan: Plan, tenant: str, store: SQLiteStore,
                        connectors: Connectors) -> None:
    """A store that holds nothing of the tenant while a target already holds documents the
    tenant's runs wrote was lost (deleted, truncated, replaced): sending now would send every
    document again. Stop, and say how to adopt what the target holds."""
    if store.holds_tenant(tenant):
        return
    for name in plan.target_connectors():
        if connectors.get(name).written_before():
            raise FlowError(
                f"the state store {store.path} holds nothing for tenant {tenant!r}, but {name} "
                f"already holds documents that this tenant's runs wrote: the state store was "
                f"lost or replaced, and running now would send every document again. Restore "
                f"it from a backup (or point HEXAFLOW_STATE at the one in use), or adopt what "
                f"{name} holds: `hexaflow adopt {plan.file}` for each flow, then run again")


def _run_pages(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
               summary: RunSummary, dry_run: bool, limit: int | None, budget: Budget | None,
               emit: Callable[[dict[str, Any]], None] | None, report: Callable[[str], None],
               progress: Callable[[RunSummary], None] | None, fence: int | None) -> None:
    source = plan.source
    raw_cursor = store.get_cursor(tenant, plan.name)
    since = json.loads(raw_cursor) if raw_cursor is not None else None
    reader = connectors.get(source.connector)
    writer = _Writer(plan, tenant, store, connectors, summary, emit, report, fence, _batch_delay())
    started = time.monotonic()
    pages = 0
    open_pages: deque[_Page] = deque()
    cursor = _CursorKeeper(plan, tenant, store, since, dry_run, fence)
    read_ahead = _ReadAhead(reader.read(source.resource, source.params, since,
                                        cursor_field=source.cursor),
                            int(_env_number(*ENV_NUMBERS[2])), writer.wake_in)
    try:
        for page in read_ahead:
            if page is not None:
                records = page.records
                if limit is not None:
                    records = records[: max(0, limit - summary.records)]
                open_page = _Page(records, page.cursor, len(records) == len(page.records))
                _map_records(plan, tenant, store, connectors, summary, open_page, dry_run, emit,
                             report, fence, writer)
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


class _CursorKeeper:
    """Moves the flow's cursor past pages whose records are all handled, in read order; a
    record not handled (a document not written) holds it for the rest of the run."""

    def __init__(self, plan: Plan, tenant: str, store: SQLiteStore, since: Any, dry_run: bool,
                 fence: int | None):
        self.plan, self.tenant, self.store, self.dry_run, self.fence = plan, tenant, store, dry_run, fence
        self.value = self.saved = since
        self.blocked = False

    def advance(self, open_pages: deque[_Page]) -> None:
        field_name = self.plan.source.cursor
        while open_pages and open_pages[0].outstanding == 0:
            page = open_pages.popleft()
            for record, ok in zip(page.records, page.handled):
                if not ok:
                    self.blocked = True
                # A page that carries its own cursor knows the order of its records (they may
                # be unsorted); only without one is the record's cursor field trusted, in read order.
                if not self.blocked and page.cursor is None and field_name and \
                        isinstance(record, dict) and record.get(field_name) is not None:
                    self.value = record[field_name]
            if not self.blocked and page.cursor is not None and page.whole:
                self.value = page.cursor
        if not self.dry_run and self.value != self.saved and self.value is not None:
            self.store.set_cursor(self.tenant, self.plan.name,
                                  json.dumps(self.value, default=str), self.fence)
            self.store.renew_lock(self.tenant, self.plan.name, self.fence, LOCK_TTL)
            self.saved = self.value


def process_records(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
                    summary: RunSummary, records: list[Any], report: Callable[[str], None],
                    fence: int | None, retry_rejected: bool = False) -> None:
    """Map and write some records now, outside a paged run (``hexaflow dlq replay``)."""
    writer = _Writer(plan, tenant, store, connectors, summary, None, report, fence)
    try:
        _map_records(plan, tenant, store, connectors, summary, _Page(records, None, True), False,
                     None, report, fence, writer, retry_rejected)
        writer.finish()
    finally:
        writer.close()


def _map_records(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
                 summary: RunSummary, page: _Page, dry_run: bool,
                 emit: Callable[[dict[str, Any]], None] | None, report: Callable[[str], None],
                 fence: int | None, writer: _Writer, retry_rejected: bool = False) -> None:
    """Map one page's records, decide each document against the ledger, hand what must be
    sent to the writer (in a dry run: print it)."""
    records = page.records
    ids: list[str | None] = []
    for record in records:
        try:
            ids.append(plan.record_id(record))
        except MappingError:
            ids.append(None)
    present = [i for i in ids if i is not None]
    known = store.entries_for_sources(tenant, plan.name, present)
    letters = set() if dry_run else store.open_dead_letter_sources(tenant, plan.name, present)
    alias = plan.source.alias
    for index, (record, source_id) in enumerate(zip(records, ids)):
        label = f"{alias} {source_id}" if source_id else f"{alias} #{summary.records + index + 1}"
        try:
            outcome = plan.evaluate(record, history_of(known.get(source_id, [])), tenant)
        except Exception as exc:      # whatever the record holds, it fails alone (a dead letter)
            reason = str(exc) if isinstance(exc, MappingError) else failure_reason(exc)
            summary.failed_records += 1
            report(f"{label}: {reason}")
            if not dry_run:
                store.dead_letter(tenant, plan.name, source_id or f"#{index}", reason, record=record)
            continue
        if source_id in letters:      # it maps now: its mapping failures are resolved
            store.resolve_dead_letters(tenant, plan.name, source_id)
        for route in outcome.routes:
            summary.count(route, "matched")
        for doc in outcome.documents:
            if writer.holds(doc):
                # The same document is already on its way in this run (the record was read
                # twice): let the ledger learn its outcome before deciding again.
                writer.finish()
            decision, reason = decide(store, tenant, doc, retry_rejected)
            if decision == SKIP:
                summary.count(doc.route, "skipped")
                continue
            if decision == REFUSE:        # the record loses this document: the run failed
                summary.count(doc.route, "conflict")
                summary.failed_records += 1
                report(f"{label}: route {doc.route}: conflict: {reason}")
                if not dry_run:
                    store.dead_letter(tenant, plan.name, doc.source_id, reason, record=record,
                                      route=doc.route, key=doc.key, payload=doc.payload)
                continue
            if decision == CONFLICT_DECISION:
                summary.count(doc.route, "conflict")
                report(f"{label}: route {doc.route}: conflict: {reason}")
                if not dry_run:
                    store.record_decision(tenant, plan.name, doc.route, doc.key,
                                          connector=doc.connector, document=doc.document,
                                          action=doc.action, source_id=doc.source_id,
                                          source_version=doc.source_version, payload=doc.payload,
                                          state="conflict", message=reason, fence=fence)
                continue
            for ens in doc.ensure:
                if writer.holds(ens) or _ensure_exists(store, connectors, tenant, ens, dry_run, fence):
                    continue
                _hand_over(writer, page, index, ens, dry_run, summary, emit)
            _hand_over(writer, page, index, doc, dry_run, summary, emit)


def _hand_over(writer: _Writer, page: _Page, index: int, doc: Document, dry_run: bool,
               summary: RunSummary, emit: Callable[[dict[str, Any]], None] | None) -> None:
    if not dry_run:
        writer.add(page, index, doc)
        return
    summary.count(doc.route, "would_write")
    if emit:
        emit({"route": doc.route, "target": f"{doc.connector}/{doc.document}",
              "action": doc.action, "key": doc.key, "payload": doc.payload})


def resend_unsettled(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
                     summary: RunSummary, report: Callable[[str], None], fence: int | None,
                     before: float) -> None:
    """Send again, as recorded, documents an earlier run planned but never saw confirmed (it
    crashed between the send and the ledger update, or the target failed) and that no route
    of this run wrote again. Deterministic keys and ids make the re-send land on the same
    document in the target."""
    stale = store.unsettled(tenant, plan.name, before)
    if not stale:
        return
    report(f"{plan.name}: sending again {len(stale)} document(s) not confirmed by an earlier run")
    writer = _Writer(plan, tenant, store, connectors, summary, None, report, fence)
    try:
        for e in stale:
            writer.add(None, -1, Document(e.flow, e.route, e.connector, e.document, e.action, e.key,
                                          json.loads(e.payload), json.loads(e.params or "{}"),
                                          e.source_id, e.source_version, (), e.is_ensure))
            writer.flush()
        writer.finish()
    finally:
        writer.close()


def _ensure_exists(store: SQLiteStore, connectors: Connectors, tenant: str, ens: Document,
                   dry_run: bool, fence: int | None) -> bool:
    rows = store.entries_for_target(tenant, ens.connector, ens.document, ens.key)
    if any(r.state in LIVE for r in rows):
        return True
    if connectors.get(ens.connector).exists(ens.document, ens.key):
        if not dry_run:
            store.record_decision(tenant, ens.flow, ens.route, ens.key, connector=ens.connector,
                                  document=ens.document, action=ens.action,
                                  source_id=ens.source_id, source_version=ens.source_version,
                                  payload=ens.payload, state="done",
                                  message="already in the target", fence=fence, ensure=True)
        return True
    return False


# Documents still moving in the target (queued → accepted → generated → posted) are polled
# while they changed within this many seconds; older ones are left to callbacks.
POLL_WINDOW_S = 30 * 86400


def poll_results(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
                 summary: RunSummary | None = None,
                 report: Callable[[str], None] | None = None) -> int:
    """One pass over this flow's documents still moving in their target (queued, accepted,
    generated): apply what the targets know now. Returns how many are still queued."""
    summary = summary or RunSummary(plan.name)
    in_motion = store.refs_in_motion(tenant, plan.name, time.time() - POLL_WINDOW_S)
    for name, refs in in_motion.items():
        apply_async_results(store, tenant, name, connectors.get(name).poll(refs), summary, report)
    return store.count(tenant, plan.name, "queued")


def settle(plan: Plan, tenant: str, store: SQLiteStore, connectors: Connectors,
           summary: RunSummary, report: Callable[[str], None] | None = None) -> int:
    """Poll for the results of this run's queued documents for a short while (asynchronous
    targets validate within seconds), so the run ends knowing what was accepted. Bounded by
    HEXAFLOW_SETTLE_SECONDS (default 5; 0 polls once). Returns how many are still queued."""
    deadline = time.monotonic() + _env_number(*ENV_NUMBERS[0])
    while True:
        queued = poll_results(plan, tenant, store, connectors, summary, report)
        if not queued or time.monotonic() >= deadline:
            return queued
        time.sleep(0.25)


def apply_async_results(store: SQLiteStore, tenant: str, connector: str,
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
                    store.dead_letter(tenant, e.flow, e.source_id, reason, route=e.route,
                                      key=e.key, payload=json.loads(e.payload))
                    if summary is not None:
                        summary.count(e.route, "rejected")
                    if report is not None:
                        report(f"flow {e.flow}, record {e.source_id}: route {e.route}: {reason}")
                elif result.status == CONFLICT:
                    if summary is not None:
                        summary.count(e.route, "conflict")
                    if report is not None:
                        report(f"flow {e.flow}, record {e.source_id}: route {e.route}: conflict: {connector} cannot change "
                               f"{e.key}: {detail} — handle it by hand")
    return changed


# --------------------------------------------------------------------------- the command
def run_command(flow: str, *, dry_run: bool = False, limit: int | None = None,
                tenant: str | None = None, state_path: str | None = None,
                out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    tenant = tenant or os.environ.get("HEXAFLOW_TENANT") or "default"
    try:
        path = resolve_flow_path(flow)
        plan = load_plan(path)
        for setting in ENV_NUMBERS:       # a bad number stops the run before anything is written
            _env_number(*setting)
        store = open_store(state_path)
    except (FlowError, StateError) as exc:
        for problem in getattr(exc, "problems", []):
            print(problem.text(), file=err)
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    connectors = Connectors(tenant, plan.base_dir)
    interactive = err.isatty()

    def emit(doc: dict[str, Any]) -> None:
        if dry_run:
            out.write(json.dumps(doc, ensure_ascii=False, sort_keys=False) + "\n")

    def report(line: str) -> None:
        if interactive:
            err.write("\r\033[K")
        print(line, file=err)

    def progress(summary: RunSummary) -> None:
        if interactive:
            per_route = ", ".join(f"{r} {sum(v for k, v in c.items() if k != 'matched')}"
                                  for r, c in summary.routes.items())
            err.write(f"\r\033[Kread {summary.records} · failed {summary.failed_records} · {per_route}")
            err.flush()

    try:
        with state_faults(store.path):      # a damaged or read-only file shows mid-run too
            summary = run_flow(plan, tenant=tenant, store=store, connectors=connectors,
                               dry_run=dry_run, limit=limit, emit=emit, report=report,
                               progress=progress)
    except (FlowError, ConnectorError, LostLock, StateError) as exc:
        if interactive:
            err.write("\r\033[K")
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    finally:
        connectors.close()
        store.close()
    if interactive:
        err.write("\r\033[K")
    (err if dry_run else out).write(summary.render())
    return EXIT_RECORDS_FAILED if summary.failed else EXIT_OK
