"""Page-number pagination the way Haravan serves it.

Haravan caps ``limit`` silently (50 on orders and products, whatever was asked), so the page size
is learned from the first page and a shorter page means the end. Sorted incremental reads walk
by ``updated_at`` instead of page numbers: after each full page the window restarts at the last
record's ``updated_at``, so a record that changes during the read (and moves to the end of the
order) cannot shift later records past a page boundary unseen.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

from hexaflow.timeutil import parse_datetime

MAX_STALE_PAGES = 20

Fetch = Callable[[Mapping[str, Any]], list[dict[str, Any]]]


def iter_pages(fetch: Fetch, params: Mapping[str, Any], limit: int, *,
               walk_field: str | None = None, max_pages: int = 1_000_000) -> Iterator[list[dict]]:
    """Yield lists of raw records; each record at most once per (id, version).

    ``walk_field``: with an ``order=<field> asc`` read, the parameter prefix to move forward
    (``updated_at`` moves ``updated_at_min``). ``fetch`` gets the full query of one page.
    """
    query = dict(params)
    query["limit"] = limit
    page = 1
    page_size: int | None = None
    seen: set[tuple[Any, Any]] = set()
    stale_pages = 0
    for _ in range(max_pages):
        query["page"] = page
        records = fetch(query)
        if page_size is None:
            page_size = len(records)       # what the server really serves per page
        fresh = []
        for record in records:
            key = (record.get("id"), record.get(walk_field or "updated_at"))
            if key not in seen:
                seen.add(key)
                fresh.append(record)
        if fresh:
            yield fresh
        if not records or len(records) < page_size or page_size == 0:
            return
        if not fresh:
            # Only records already seen: a tie group longer than a page at the window start
            # (go on to the next page), or a server that ignores `page` (give up after a few).
            stale_pages += 1
            if stale_pages > MAX_STALE_PAGES:
                return
            page += 1
            continue
        stale_pages = 0
        if walk_field:
            last = records[-1].get(walk_field)
            if last and last != query.get(f"{walk_field}_min"):
                query[f"{walk_field}_min"] = last
                page = 1
                # Only records stamped at the new window's start can come back (a changed
                # record has a new stamp, hence a new key): forget the others, so a read of
                # 100,000 orders keeps a page of keys, not 100,000.
                seen = _tail_at(records, walk_field, last)
                continue
        page += 1


def _tail_at(records: list[dict[str, Any]], field: str, last: Any) -> set[tuple[Any, Any]]:
    """Keys of the records at the end of a sorted page stamped at the same instant as ``last``
    (Haravan renders one instant with 1-7 fractional digits, so text may differ)."""
    floor = _instant(last)
    keys: set[tuple[Any, Any]] = set()
    for record in reversed(records):
        stamp = record.get(field)
        if stamp != last and (floor is None or _instant(stamp) != floor):
            break
        keys.add((record.get("id"), stamp))
    return keys


def _instant(value: Any) -> Any:
    try:
        return parse_datetime(value) if isinstance(value, str) and value else None
    except ValueError:
        return None
