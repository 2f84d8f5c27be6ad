"""Page-number pagination the way Haravan serves it.

Haravan caps ``limit`` silently (50 on orders and products, whatever was asked), so the page size
is learned from the first page and a shorter page means the end. Sorted incremental reads walk
by ``updated_at`` instead of page numbers: after each full page the window restarts at the last
record's ``updated_at``, so a record that changes during the read (and moves to the end of the
order) cannot shift later records past a page boundary unseen.

A walk only ends if the server does what it is asked, and Haravan silently ignores parameters
it does not know: a server that ignores ``updated_at_min`` or ``order`` serves old pages again
as if they were new, for ever. So every page of a walk is checked before it is used (each
record at or after the window start, in ``updated_at`` order), and so is the read's progress
(a page that holds only records already read, again and again); when a check fails the read
stops with :class:`WalkError`, which says what the server did.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

from hexaflow.errors import HexaflowError
from hexaflow.timeutil import parse_datetime

MAX_STALE_PAGES = 20
# How far a record may sit before the window start, or before the record above it, and still
# count as in order: the precision Haravan compares and sorts stamps at is undocumented (the
# sandbox compares milliseconds; a server may compare whole seconds).
SLACK = timedelta(seconds=1)

Fetch = Callable[[Mapping[str, Any]], list[dict[str, Any]]]
Key = tuple[Any, Any]


class WalkError(HexaflowError):
    """The server did not do what the query asked, so the read could never end.

    ``param`` is the query parameter the server ignored; the message says what it answered."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def iter_pages(fetch: Fetch, params: Mapping[str, Any], limit: int, *,
               walk_field: str | None = None, max_pages: int = 1_000_000) -> Iterator[list[dict]]:
    """Yield lists of raw records; each record at most once per (id, version).

    ``walk_field``: with an ``order=<field> asc`` read, the parameter prefix to move forward
    (``updated_at`` moves ``updated_at_min``). ``fetch`` gets the full query of one page.
    Raises :class:`WalkError` before yielding a page that shows the server ignored the query.
    """
    query = dict(params)
    query["limit"] = limit
    page = 1
    page_size: int | None = None
    seen: dict[Key, datetime | None] = {}     # key -> its instant (walks forget the old ones)
    floor = _instant(query.get(f"{walk_field}_min")) if walk_field else None
    stale_pages = 0
    for _ in range(max_pages):
        query["page"] = page
        records = fetch(query)
        if page_size is None:
            page_size = len(records)       # what the server really serves per page
        field = walk_field or "updated_at"
        # Instants matter to walks only (checks, forgetting old keys): parsed once, there.
        instants = [_instant(r.get(field)) if walk_field else None for r in records]
        if walk_field:
            _check_walk(records, instants, walk_field, floor, page)
        fresh = []
        for record, instant in zip(records, instants):
            key = (record.get("id"), record.get(field))
            if key not in seen:
                seen[key] = instant
                fresh.append(record)
        if fresh:
            yield fresh
        if not records or len(records) < page_size or page_size == 0:
            return
        if not fresh:
            # Only records already seen: a tie group longer than a page at the window start
            # (go on to the next page), or a server that ignores `page` (stop after a few).
            stale_pages += 1
            if stale_pages > MAX_STALE_PAGES:
                raise WalkError("page", f"page {page} and the {MAX_STALE_PAGES} pages before it "
                                        "held only records already read: the server ignores "
                                        "`page` and keeps answering the same records")
            page += 1
            continue
        stale_pages = 0
        if walk_field:
            last, last_instant = records[-1].get(walk_field), instants[-1]
            if last_instant is not None and (floor is None or last_instant > floor):
                query[f"{walk_field}_min"] = last
                floor = last_instant
                page = 1
                # Only records stamped at (or, at the server's precision, just before) the new
                # window's start can come back: forget the others, so a read of 100,000 orders
                # keeps a page of keys, not 100,000.
                lowest = _with_slack(floor)
                seen = {k: t for k, t in seen.items() if t is None or t >= lowest}
                continue
        page += 1


def _check_walk(records: list[dict[str, Any]], instants: list[datetime | None], field: str,
                floor: datetime | None, page: int) -> None:
    """Raise WalkError unless every record is at or after the window start and in order."""
    lowest = None if floor is None else _with_slack(floor)
    previous: tuple[dict[str, Any], datetime] | None = None     # the record above, its instant
    for record, instant in zip(records, instants):
        stamp = record.get(field)
        if instant is None:
            continue
        if lowest is not None and instant < lowest:
            raise WalkError(f"{field}_min", (
                f"asked for records with {field} from {_text(floor)}, page {page} holds record "
                f"{record.get('id')} with {field} {stamp}: the server ignores `{field}_min`"))
        if previous is not None and instant < _with_slack(previous[1]):
            above = previous[0]
            raise WalkError("order", (
                f"asked for records in `{field} asc` order, page {page} holds record "
                f"{record.get('id')} ({field} {stamp}) after record {above.get('id')} "
                f"({field} {above.get(field)}): the server ignores `order`"))
        previous = (record, instant)


def _instant(value: Any) -> datetime | None:
    """The UTC instant of a stamp; None for none, text that is not one, or one out of range
    (Haravan renders one instant with 1-7 fractional digits, so the text may differ)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_datetime(value).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _with_slack(instant: datetime) -> datetime:
    try:
        return instant - SLACK
    except OverflowError:      # the first second of year 1
        return instant


def _text(instant: datetime | None) -> str:
    return "" if instant is None else instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
