"""The batching writer: documents of a run wait for their batch, one batch is in flight."""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from hexaflow.connector import CONFLICT, DONE, FAILED, QUEUED, REJECTED, Connector, ConnectorError, \
    WriteItem, WriteResult
from hexaflow.cursor import Page
from hexaflow.ledger_rows import DeadLetter, Outcome, ledger_write, row_ref
from hexaflow.plan import Document
from hexaflow.runcontext import RunContext


@dataclass
class _Item:
    page: Page | None           # None: a document sent again from the ledger
    index: int                  # the record's index in its page
    doc: Document


class Writer:
    """Documents of a run waiting for their batch, and the one batch in flight.

    The ledger row of every document is written (planned) in one transaction before its batch
    leaves, and the outcomes in one transaction after; the send itself runs in a worker thread
    so that the next pages are mapped meanwhile. All ledger work stays in the caller's thread.
    A batch leaves when it is full (the target connector's ``batch_size``), when its oldest
    document has waited ``delay`` seconds, or when the run ends.
    """

    def __init__(self, ctx: RunContext, delay: float = float("inf")):
        self.ctx = ctx
        self.plan, self.tenant, self.store = ctx.plan, ctx.tenant, ctx.store
        self.connectors, self.summary, self.emit = ctx.connectors, ctx.summary, ctx.emit
        self.report, self.fence = ctx.report, ctx.fence
        self.delay = delay
        self.waiting: list[_Item] = []
        self.waiting_since = 0.0
        self.in_flight: tuple[list[_Item], Future] | None = None
        self.targets: set[tuple[str, str, str]] = set()    # (connector, document, key) not yet settled
        self._pool: ThreadPoolExecutor | None = None

    def holds(self, doc: Document) -> bool:
        """Whether a document with this target key waits or is in flight in this run."""
        return (doc.connector, doc.document, doc.key) in self.targets

    def add(self, page: Page | None, index: int, doc: Document) -> None:
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
        with self.store.transaction():
            for item in batch:
                doc = item.doc
                self.store.plan(ledger_write(self.tenant, doc), self.fence)
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
                message: str | None
                if result is None:
                    state, code = FAILED, None
                    message = f"{doc.connector} returned no result for this document"
                else:
                    state, code, message = result.status, result.code, result.message
                self.store.mark(row_ref(self.tenant, doc),
                                Outcome(state, result.target_ref if result else None, code,
                                        message), self.fence)
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
                    self.store.dead_letter(DeadLetter(self.tenant, flow, doc.source_id, reason,
                                                      record, doc.route, doc.key, doc.payload))
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
