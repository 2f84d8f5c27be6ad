"""The status page's read-only queries of the state store (engine/statuspage.py shows them).

Each one is bounded (LIMIT, or index skip-scans) so the page stays fast with 100k+ documents.
The SQL is the store's shared SQL but for two words of each backend's own (``_words``): on
SQLite ``+tenant`` keeps the planner on the rowid order (newest first) instead of sorting every
row of the tenant, and LIKE is already case-insensitive for ASCII; on PostgreSQL the newest
documents come from the index on (tenant, created_at) and the text search is ILIKE. None of
them writes.
"""
from __future__ import annotations

from typing import Any, Iterable

from hexaflow.state import _COLUMNS, LedgerEntry, StateStore


def _words(store: StateStore) -> tuple[str, str, str]:
    """In the store's dialect: (what precedes a column that the newest-first lists filter
    on, their newest-first order, a case-insensitive LIKE)."""
    if store.dialect == "sqlite":
        return "+", "rowid DESC", "LIKE"
    return "", "created_at DESC, flow, route, key", "ILIKE"


def _escaped(text: str) -> str:
    """A LIKE pattern that finds ``text`` anywhere (its own % _ and \\ taken literally)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _entries(store: StateStore, sql: str, args: Iterable[Any]) -> list[LedgerEntry]:
    return [LedgerEntry(*row) for row in store.db.execute(sql, tuple(args))]


def flows(store: StateStore, tenant: str) -> list[str]:
    """Flows with documents, dead letters, a cursor or one of the last 1000 runs."""
    flows: set[str] = set()
    for table in ("ledger", "dead_letters"):       # skip-scan: one index probe per flow
        flows.update(_next_values(store, table, "flow", (), (tenant,)))
    flows.update(r[0] for r in store.db.execute("SELECT flow FROM cursors WHERE tenant=?", (tenant,)))
    hint = _words(store)[0]
    flows.update(r[0] for r in store.db.execute(
        f"SELECT DISTINCT flow FROM (SELECT flow FROM runs WHERE {hint}tenant=? ORDER BY id DESC "
        f"LIMIT 1000) AS recent", (tenant,)))
    return sorted(flows)


def document_counts(store: StateStore, tenant: str) -> list[tuple[str, str, int]]:
    """(flow, state, documents) for every flow and state (reads every ledger row)."""
    return list(store.db.execute("SELECT flow, state, count(*) FROM ledger WHERE tenant=? "
                                 "GROUP BY flow, state", (tenant,)))


def recent_entries(store: StateStore, tenant: str, *, flow: str | None = None,
                   state: str | None = None, limit: int = 100) -> list[LedgerEntry]:
    """The newest documents (by creation), optionally of one flow and/or in one state."""
    hint, newest, _like = _words(store)
    sql, args = f"SELECT {_COLUMNS} FROM ledger WHERE {hint}tenant=?", [tenant]
    for column, value in (("flow", flow), ("state", state)):
        if value is not None:
            sql += f" AND {hint}{column}=?"
            args.append(value)
    return _entries(store, sql + f" ORDER BY {newest} LIMIT ?", (*args, limit))


def entries_with_key(store: StateStore, tenant: str, key: str, limit: int = 50) -> list[LedgerEntry]:
    """Documents with this code in any flow and route: one primary-key probe per
    (flow, route), found by skip-scanning the primary key."""
    out: list[LedgerEntry] = []
    for flow in _next_values(store, "ledger", "flow", (), (tenant,)):
        for route in _next_values(store, "ledger", "route", ("flow",), (tenant, flow)):
            out.extend(_entries(store, f"SELECT {_COLUMNS} FROM ledger WHERE tenant=? AND "
                                     f"flow=? AND route=? AND key=?", (tenant, flow, route, key)))
            if len(out) >= limit:
                return out[:limit]
    return out


def _next_values(store: StateStore, table: str, column: str, fixed: tuple[str, ...],
                 args: tuple[Any, ...]) -> Iterable[str]:
    """The distinct values of ``column`` under (tenant, *fixed) = args, one index probe
    each (a skip-scan; the column must follow them in an index)."""
    where = " AND ".join(f"{c}=?" for c in ("tenant", *fixed))
    row = store.db.execute(f"SELECT min({column}) FROM {table} WHERE {where}", args).fetchone()
    while row and row[0] is not None:
        yield row[0]
        row = store.db.execute(f"SELECT min({column}) FROM {table} WHERE {where} AND {column}>?",
                              (*args, row[0])).fetchone()


def entries_containing(store: StateStore, tenant: str, text: str, limit: int = 50) -> list[LedgerEntry]:
    """The newest documents whose payload contains ``text`` (case-insensitive for ASCII)."""
    hint, newest, like = _words(store)
    return _entries(store, f"SELECT {_COLUMNS} FROM ledger WHERE {hint}tenant=? AND payload {like} ? "
                         f"ESCAPE '\\' ORDER BY {newest} LIMIT ?", (tenant, _escaped(text), limit))


def dead_letters(store: StateStore, tenant: str, *, source_id: str | None = None,
                 text: str | None = None, status: str | None = "open",
                 limit: int = 200) -> list[dict[str, Any]]:
    """The newest dead letters (open ones by default), of one record or whose id, code,
    record or payload contains ``text``."""
    hint, _newest, like = _words(store)
    sql = ("SELECT id, flow, source_id, route, key, reason, record, payload, created_at, status "
           f"FROM dead_letters WHERE {hint}tenant=?")
    args: list[Any] = [tenant]
    if status is not None:
        sql += " AND status=?"
        args.append(status)
    if source_id is not None:
        sql += " AND source_id=?"
        args.append(source_id)
    if text is not None:
        pattern = _escaped(text)
        sql += (f" AND (source_id=? OR key=? OR record {like} ? ESCAPE '\\' "
                f"OR payload {like} ? ESCAPE '\\')")
        args += [text, text, pattern, pattern]
    names = ("id", "flow", "source_id", "route", "key", "reason", "record", "payload",
             "created_at", "status")
    return [dict(zip(names, row)) for row in
            store.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]


def open_dead_letter_counts(store: StateStore, tenant: str) -> dict[str, int]:
    return dict(store.db.execute("SELECT flow, count(*) FROM dead_letters WHERE tenant=? AND "
                                 "status='open' GROUP BY flow", (tenant,)))
