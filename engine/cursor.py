"""Cursor keeping: the pages of a run in read order, and the flow's cursor moved past those
whose records are all handled."""
from __future__ import annotations

import json
from collections import deque
from typing import Any

from hexaflow.runcontext import RunContext

LOCK_TTL = 600.0


class Page:
    """A page being handled: its records, which of them are fully written, and how many of
    its documents still wait for an outcome (the cursor passes it only at zero)."""

    def __init__(self, records: list[Any], cursor: Any, whole: bool):
        self.records = records
        self.cursor = cursor
        self.whole = whole                   # all the page's records were taken (no --limit cut)
        self.handled = [True] * len(records)
        self.outstanding = 0


class CursorKeeper:
    """Moves the flow's cursor past pages whose records are all handled, in read order; a
    record not handled (a document not written) holds it for the rest of the run. A dry run
    moves it in memory only."""

    def __init__(self, ctx: RunContext, since: Any):
        self.ctx = ctx
        self.value = self.saved = since
        self.blocked = False

    def advance(self, open_pages: deque[Page]) -> None:
        ctx = self.ctx
        field_name = ctx.plan.source.cursor
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
        if not ctx.dry_run and self.value != self.saved and self.value is not None:
            ctx.store.set_cursor(ctx.tenant, ctx.flow, json.dumps(self.value, default=str),
                                 ctx.fence)
            ctx.store.renew_lock(ctx.tenant, ctx.flow, ctx.fence, LOCK_TTL)
            self.saved = self.value
