"""The state store: cursors, the ledger of documents, dead letters, run history and flow locks.

Embedded SQLite by default (``HEXAFLOW_STATE``, default ``./.hexaflow/state.db``). Every
operation is an idempotent compare-and-set written in SQL that PostgreSQL accepts too
(``INSERT ... ON CONFLICT``), every key starts with the tenant, and nothing is cached between
calls, so a server database is an adapter, not a rewrite (docs/state.md).

The ledger holds one row per (tenant, flow, route, document key). Its ``state`` moves forward
through the lifecycle: planned → (done | queued) → (accepted | rejected | conflict) →
generated → posted; ``failed`` (transient) and ``planned`` rows are unsettled and are sent
again by the next run; ``deleted`` marks a withdrawn document. Later results follow
``RESULT_MOVES`` (``result_applies``).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

from hexaflow.errors import LostLock, StateError
from hexaflow.ledger_rows import DeadLetter, LedgerWrite, Outcome, RowRef

DEFAULT_STATE_PATH = "./.hexaflow/state.db"

# What the target can still do to a document it holds: generate it, post it, delete it.
_ONWARD = frozenset({"generated", "posted", "deleted"})
# The later results (callback or poll) each state takes: only forward along the lifecycle, and
# only what the target can still do from there (docs/state.md, "Later results"). A state not
# listed takes none: planned and failed rows are sent again and that send's result counts;
# posted and deleted are the end.
RESULT_MOVES: dict[str, frozenset[str]] = {
    "queued": frozenset({"accepted", "rejected", "conflict"}) | _ONWARD,
    "done": _ONWARD,
    "accepted": _ONWARD,        # never rejected or conflict: such a failure is a stale one
    "rejected": _ONWARD,        # generated or posted: the rejection was a stale one
    "conflict": frozenset({"deleted"}),  # the target keeps its version until it is deleted
    "generated": frozenset({"posted"}),  # a generated voucher cannot be deleted through the API
}
# The `code` of a ledger row made by `hexaflow adopt`: its payload is the flow's rendering at
# adoption, not what the target received, so a later change is not sent blindly (runner.decide).
ADOPTED = "adopted"
UNSETTLED = ("planned", "failed")
LIVE = ("done", "queued", "accepted", "generated", "posted")     # the target holds it
FINAL_IN_TARGET = ("generated", "posted")                         # can no longer change
# The states in which a document's stock moves (column ``stock``) are still to come: it is
# being sent, or the target holds it and has not made it final. Posted (and done, a
# synchronous target's write, final at once) moved the target's stock, which its balance
# shows; rejected, conflict and deleted will not move it as sent.
HOLDING = ("planned", "failed", "queued", "accepted", "generated")

@dataclass(frozen=True)
class LedgerEntry:
    tenant: str
    flow: str
    route: str
    key: str
    connector: str
    document: str
    action: str
    source_id: str
    source_version: str | None
    payload_hash: str
    payload: str
    params: str | None
    state: str
    target_ref: str | None
    code: str | None
    message: str | None
    attempts: int
    created_at: float
    updated_at: float
    is_ensure: bool = False      # a prerequisite a route ensured (route "<route>.<ensure>")

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_ensure", bool(self.is_ensure))    # SQLite gives 0 or 1

    @property
    def settled(self) -> bool:
        return self.state not in UNSETTLED


_COLUMNS = ", ".join(LedgerEntry.__dataclass_fields__)


@dataclass(frozen=True)
class LoginFailures:
    """Wrong admin tokens of one client (scope ``client``, name its address) or of every
    client together (scope ``token``): how many, no try looked at before ``until`` (the
    store's clock), and the digests of the recent guesses (never a guess itself)."""
    count: int = 0
    until: float = 0.0
    recent: tuple[str, ...] = ()


def result_applies(current: str, result: str) -> bool:
    """Whether a later result of a write moves a document in state ``current`` to ``result``
    (RESULT_MOVES): a stale rejection never undoes an acceptance, nothing leaves posted."""
    return result in RESULT_MOVES.get(current, frozenset())


def payload_hash(payload: Any) -> str:
    return _digest(canonical_json(payload))


def _digest(body: str) -> str:
    import hashlib
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _json_default(value: Any) -> Any:
    # Records keep their decimals as JSON numbers, so a replayed record is the record read.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)


def _holder_is_dead(owner: str | None) -> bool:
    """A lock held by a process of this host that no longer exists (killed run)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def state_path(explicit: str | None = None) -> str:
    from hexaflow.environment import state_location
    return state_location(explicit, DEFAULT_STATE_PATH)


# What an SQLite error says about the state file (by its primary result code), and the fix.
_FAULTS = {
    "SQLITE_READONLY": "cannot write the state file ({reason}); let the user running hexaflow "
                       "write to {file} and to its folder {folder} (SQLite writes {name}-wal and "
                       "{name}-shm there), or set HEXAFLOW_STATE (or --state) to a state file it "
                       "can write",
    "SQLITE_CORRUPT": "the state file is damaged ({reason}); stop every hexaflow using it and "
                      "restore {file} from your latest backup (without one: move it aside and "
                      "run `hexaflow adopt FLOW` for each flow, which rebuilds the ledger from "
                      "what the targets hold)",
    "SQLITE_NOTADB": "cannot open the state file ({reason}); set HEXAFLOW_STATE (or --state) to "
                     "the state file, or, if {file} was one, restore it from your latest backup",
    "SQLITE_IOERR": "reading or writing the state file failed ({reason}); check the disk holding "
                    "{file} (free space, errors), then run again",
    "SQLITE_BUSY": "the state file stayed locked by another program ({reason}); let it finish "
                   "(another hexaflow, or a tool that has {file} open), then run again",
}
_FAULTS.update({"SQLITE_PERM": _FAULTS["SQLITE_READONLY"], "SQLITE_FULL": _FAULTS["SQLITE_IOERR"],
                "SQLITE_LOCKED": _FAULTS["SQLITE_BUSY"]})


def state_fault(target: str, exc: sqlite3.Error | str) -> StateError | None:
    """The StateError for an SQLite error on the state file ``target`` (a corrupt page, a file
    this user cannot write, a failing disk, a lock held too long): names the file, what is wrong
    and what to do. A ``str`` is a problem ``PRAGMA quick_check`` found (a damaged file). None
    for errors that say nothing about the file (a bug keeps its traceback)."""
    reason: str | sqlite3.Error
    if isinstance(exc, str):
        code, reason = "SQLITE_CORRUPT", exc
    else:
        # Extended names (SQLITE_IOERR_SHORT_READ...) start with their primary one.
        name = getattr(exc, "sqlite_errorname", None) or ""
        code, reason = next((c for c in _FAULTS if name == c or name.startswith(c + "_")), ""), exc
    if not code:
        return None
    path = Path(target)
    message = _FAULTS[code].format(reason=reason, file=target, name=path.name,
                                   folder=path.parent.resolve())
    return StateError(f"HEXAFLOW_STATE={target}: {message}")


@contextmanager
def state_faults(setting: str | None) -> Iterator[None]:
    """Around the use of a state store: an SQLite error about the state file (see state_fault),
    at any moment of a command, becomes a StateError that names the file and the fix."""
    try:
        yield
    except sqlite3.Error as exc:
        fault = state_fault(state_path(setting).removeprefix("sqlite:///"), exc)
        if fault is None:
            raise
        raise fault from None
    except Exception as exc:
        if not type(exc).__module__.startswith("psycopg"):
            raise
        from hexaflow.state_pg import server_fault
        raise server_fault(state_path(setting), exc) from None


def is_server_url(target: str) -> bool:
    """Whether a HEXAFLOW_STATE names a PostgreSQL server rather than an SQLite file."""
    return target.startswith(("postgresql://", "postgres://"))


def open_store(path: str | None = None) -> StateStore:
    """The state store named by ``path`` / HEXAFLOW_STATE: a file path or sqlite:///path (the
    embedded SQLite store), or a postgresql:// URL (hexaflow.state_pg). Raises StateError,
    naming the setting (never a URL's password), when it cannot be opened."""
    target = state_path(path)
    if is_server_url(target):
        from hexaflow.state_pg import open_postgres
        return open_postgres(target)
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///"):]
    elif "://" in target:
        raise StateError(f"HEXAFLOW_STATE={target.split('://')[0]}://…: not a state store; use "
                         f"a file path, sqlite:///path or postgresql://user@host/database")
    try:
        return SQLiteStore(target)
    except (OSError, sqlite3.Error) as exc:
        fault = state_fault(target, exc) if isinstance(exc, sqlite3.Error) else None
        if fault is not None:        # damaged, read-only...: the fix is not another setting
            raise fault from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            blocking = next((p for p in Path(target).parents if p.exists() and not p.is_dir()), None)
            reason = f"{blocking} is a file, not a folder" if blocking else reason
        raise StateError(f"HEXAFLOW_STATE={target}: cannot open the state file ({reason}); set "
                         f"HEXAFLOW_STATE (or --state) to a state file, or to a new file in a "
                         f"folder you can write to, e.g. {DEFAULT_STATE_PATH}") from None


def _applied(db: sqlite3.Connection, sql: str) -> set[str]:
    """The migration ids a state file holds (none before its first migration)."""
    try:
        return {row[0] for row in db.execute(sql)}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return set()
        raise


def stock_text(moves: Iterable[Any]) -> str | None:
    """The ``stock`` column of a document: its StockMoves as JSON ``[[place, item, "qty"]]``
    (the quantity as exact text), or NULL for a document that moves no stock."""
    rows = [[m.place, m.item, str(m.quantity)] for m in moves]
    return canonical_json(rows) if rows else None


class StateStore:
    """The state store's operations, the same on every backend: each is one compare-and-set
    statement (or a few in one transaction) written in SQL that SQLite and PostgreSQL both
    accept, with ``?`` marks. A backend gives ``db`` (``execute`` / ``executemany`` returning
    rows and ``rowcount``), ``now`` (the time every row records), transactions, the flow lock
    and its fence check (SQLiteStore below, PostgresStore in hexaflow.state_pg)."""

    path: str            # what error messages name: the file, or the URL without password
    db: Any
    # The few statements that need a backend's own words (the status page's planner hints
    # and case-insensitive search: statuspage_queries.py) ask this.
    dialect: str = "sqlite"

    def now(self) -> float:
        """Seconds since the epoch, by the store's clock (every process sharing it agrees)."""
        raise NotImplementedError

    def transaction(self) -> Any:
        """Group several calls into one transaction (a run plans and marks a batch at once);
        nested uses join the outer one."""
        raise NotImplementedError

    def _tx(self) -> Any:
        return self.transaction()

    def _check_fence(self, tenant: str, flow: str, fence: int | None) -> None:
        """LostLock unless ``fence`` is the flow lock's current fencing number (None: a write
        that holds no lock, e.g. a callback's result)."""
        raise NotImplementedError

    def _serialize(self, key: str) -> None:
        """Inside a transaction: wait until no other transaction works on ``key`` (a
        read-then-write such as applying a result). SQLite's write transactions are serial
        already."""

    def _reads_stock(self) -> bool:
        """Whether the ledger has its ``stock`` column (only a state file from before it,
        opened read-only, has not)."""
        return True

    def close(self) -> None:
        raise NotImplementedError

    def check_usable(self) -> None:
        """StateError unless the store can be read and written (for a long-running process,
        which must stop at start rather than fail at every run)."""
        raise NotImplementedError

    def make_read_only(self) -> None:
        """Refuse every write from now on (the status page's store)."""
        raise NotImplementedError

    # -- the flow lock (docs/state.md, "Locks") ------------------------------------------
    def acquire_lock(self, tenant: str, flow: str, ttl: float = 600.0,
                     owner: str | None = None) -> int | None:
        """Take the flow lock; return its fencing number, or None if another live run holds it."""
        raise NotImplementedError

    def lock_holder(self, tenant: str, flow: str) -> tuple[str, float] | None:
        """(owner, until when) of the flow lock while a run holds it."""
        raise NotImplementedError

    def renew_lock(self, tenant: str, flow: str, fence: int | None, ttl: float = 600.0) -> None:
        """Extend the lock held with ``fence``; LostLock when it is no longer held (a None
        fence holds no lock)."""
        raise NotImplementedError

    def release_lock(self, tenant: str, flow: str, fence: int | None) -> None:
        raise NotImplementedError

    def _insert_id(self, sql: str, args: Iterable[Any]) -> int:
        """Run an ``INSERT … RETURNING id``; the id of the row it added. Every row is read, so
        the statement is complete (and its write lock released) when this returns."""
        rows = self.db.execute(sql, tuple(args)).fetchall()
        if not rows:
            raise StateError("the state store did not report the id of the row it added")
        return int(rows[0][0])

    # -- cursors ------------------------------------------------------------------------
    def get_cursor(self, tenant: str, flow: str) -> str | None:
        row = self.db.execute("SELECT value FROM cursors WHERE tenant=? AND flow=?",
                              (tenant, flow)).fetchone()
        return row[0] if row else None

    def set_cursor(self, tenant: str, flow: str, value: str | None, fence: int | None = None) -> None:
        with self._tx():
            self._check_fence(tenant, flow, fence)
            self.db.execute(
                "INSERT INTO cursors (tenant, flow, value, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (tenant, flow) DO UPDATE SET value=excluded.value, "
                "updated_at=excluded.updated_at", (tenant, flow, value, self.now()))

    # -- ledger -------------------------------------------------------------------------
    def _entries(self, sql: str, args: Iterable[Any]) -> list[LedgerEntry]:
        return [LedgerEntry(*row) for row in self.db.execute(sql, tuple(args))]

    def entry(self, tenant: str, flow: str, route: str, key: str) -> LedgerEntry | None:
        rows = self._entries(f"SELECT {_COLUMNS} FROM ledger WHERE tenant=? AND flow=? AND route=? "
                             f"AND key=?", (tenant, flow, route, key))
        return rows[0] if rows else None

    def entries_for_target(self, tenant: str, connector: str, document: str,
                           key: str) -> list[LedgerEntry]:
        return self._entries(f"SELECT {_COLUMNS} FROM ledger WHERE tenant=? AND connector=? AND "
                             f"document=? AND key=?", (tenant, connector, document, key))

    def entries_for_sources(self, tenant: str, flow: str,
                            source_ids: list[str]) -> dict[str, list[LedgerEntry]]:
        out: dict[str, list[LedgerEntry]] = {}
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for e in self._entries(f"SELECT {_COLUMNS} FROM ledger WHERE tenant=? AND flow=? AND "
                                   f"source_id IN ({marks}) ORDER BY created_at",
                                   (tenant, flow, *chunk)):
                out.setdefault(e.source_id, []).append(e)
        return out

    def entries(self, tenant: str, flow: str | None = None, state: str | None = None,
                source_id: str | None = None) -> list[LedgerEntry]:
        sql, args = f"SELECT {_COLUMNS} FROM ledger WHERE tenant=?", [tenant]
        for column, value in (("flow", flow), ("state", state), ("source_id", source_id)):
            if value is not None:
                sql += f" AND {column}=?"
                args.append(value)
        return self._entries(sql + " ORDER BY created_at", args)

    def unsettled(self, tenant: str, flow: str, before: float) -> list[LedgerEntry]:
        """Rows planned or failed before ``before`` (not confirmed by the run that sent them)."""
        marks = ",".join("?" * len(UNSETTLED))
        return self._entries(f"SELECT {_COLUMNS} FROM ledger WHERE tenant=? AND flow=? AND "
                             f"state IN ({marks}) AND updated_at < ? ORDER BY created_at",
                             (tenant, flow, *UNSETTLED, before))

    def refs_in_motion(self, tenant: str, flow: str, changed_since: float) -> dict[str, list[str]]:
        """connector → target refs of documents whose outcome may still change: queued ones,
        and accepted or generated ones that changed since ``changed_since``. Only the refs are
        read, so a ledger of any size costs a list of short strings."""
        out: dict[str, list[str]] = {}
        for connector, ref in self.db.execute(
                "SELECT connector, target_ref FROM ledger WHERE tenant=? AND flow=? AND "
                "target_ref IS NOT NULL AND (state='queued' OR (state IN ('accepted', "
                "'generated') AND updated_at >= ?))", (tenant, flow, changed_since)):
            out.setdefault(connector, []).append(ref)
        return out

    # -- stock held by documents not yet final (docs/state.md) -------------------------
    def pending_stock(self, tenant: str, connector: str) -> dict[str, dict[str, Decimal]]:
        """place → item → the net quantity that the tenant's documents written to ``connector``
        and not yet final there (HOLDING) will still move in its stock: issues below zero,
        receipts above. Places and items with no such document are left out. Empty for a
        store opened read-only from a file older than the ``stock`` column."""
        if not self._reads_stock():
            return {}
        marks = ",".join("?" * len(HOLDING))
        out: dict[str, dict[str, Decimal]] = {}
        for (text,) in self.db.execute(
                f"SELECT stock FROM ledger WHERE tenant=? AND connector=? AND state IN ({marks}) "
                f"AND stock IS NOT NULL", (tenant, connector, *HOLDING)):
            for place, item, quantity in json.loads(text):
                items = out.setdefault(place, {})
                items[item] = items.get(item, Decimal(0)) + Decimal(quantity)
        return out

    def holding_refs(self, tenant: str, connector: str) -> list[str]:
        """Target refs of the tenant's documents in ``connector`` that hold stock and whose
        outcome may still change (queued, accepted, generated), of every flow and however
        old: a run reading that stock polls them first."""
        return [ref for (ref,) in self.db.execute(
            "SELECT DISTINCT target_ref FROM ledger WHERE tenant=? AND connector=? AND stock IS "
            "NOT NULL AND target_ref IS NOT NULL AND state IN ('queued', 'accepted', "
            "'generated')", (tenant, connector))]

    def count(self, tenant: str, flow: str, state: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM ledger WHERE tenant=? AND flow=? AND state=?",
                               (tenant, flow, state)).fetchone()[0]

    def plan(self, write: LedgerWrite, fence: int | None = None) -> None:
        """Record that this document is about to be sent (written before the send)."""
        ref = write.ref
        body = canonical_json(write.payload)
        digest = _digest(body)
        now = self.now()
        with self._tx():
            self._check_fence(ref.tenant, ref.flow, fence)
            self.db.execute(
                "INSERT INTO ledger (tenant, flow, route, key, connector, document, action, "
                "source_id, source_version, payload_hash, payload, params, state, attempts, "
                "created_at, updated_at, is_ensure, stock) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'planned',0,?,?,?,?) "
                "ON CONFLICT (tenant, flow, route, key) DO UPDATE SET "
                "action=excluded.action, source_version=excluded.source_version, "
                "payload_hash=excluded.payload_hash, payload=excluded.payload, "
                "params=excluded.params, state='planned', code=NULL, message=NULL, "
                "updated_at=excluded.updated_at, stock=excluded.stock",
                (ref.tenant, ref.flow, ref.route, ref.key, write.connector, write.document,
                 write.action, write.source_id, write.source_version, digest, body,
                 canonical_json(dict(write.params or {})), now, now, int(write.ensure),
                 stock_text(write.stock)))
            self._event(ref, "planned", None, now)

    def mark(self, ref: RowRef, outcome: Outcome, fence: int | None = None) -> None:
        """Set the outcome of a send (or a decision such as a conflict)."""
        now = self.now()
        with self._tx():
            self._check_fence(ref.tenant, ref.flow, fence)
            sets = "state=?, code=?, message=?, updated_at=?, attempts=attempts+?"
            args: list[Any] = [outcome.state, outcome.code, outcome.message, now,
                               1 if outcome.attempted else 0]
            if outcome.target_ref is not None:
                sets += ", target_ref=?"
                args.append(outcome.target_ref)
            if outcome.payload is not None:
                sets += ", payload=?, payload_hash=?"
                args += [canonical_json(outcome.payload), payload_hash(outcome.payload)]
            self.db.execute(f"UPDATE ledger SET {sets} WHERE tenant=? AND flow=? AND route=? AND key=?",
                            (*args, ref.tenant, ref.flow, ref.route, ref.key))
            self._event(ref, outcome.state, outcome.message, now)

    def record_decision(self, write: LedgerWrite, state: str, message: str | None = None,
                        fence: int | None = None) -> None:
        """A ledger row for something decided without sending (a conflict, an existing doc)."""
        with self._tx():
            self.plan(write, fence)
            self.mark(write.ref, Outcome(state, message=message, attempted=False), fence)

    def apply_result(self, tenant: str, connector: str, target_ref: str, state: str,
                     code: str | None = None, message: str | None = None) -> list[LedgerEntry]:
        """Apply a later outcome (callback or poll) to the rows with this target_ref where
        ``result_applies``; returns the rows that changed."""
        changed = []
        with self._tx():
            self._serialize(f"result:{tenant}:{connector}:{target_ref}")
            rows = self._entries(f"SELECT {_COLUMNS} FROM ledger WHERE tenant=? AND connector=? "
                                 f"AND target_ref=?", (tenant, connector, target_ref))
            for e in rows:
                if not result_applies(e.state, state):
                    continue
                now = self.now()
                self.db.execute("UPDATE ledger SET state=?, code=?, message=?, updated_at=? WHERE "
                                "tenant=? AND flow=? AND route=? AND key=?",
                                (state, code, message, now, e.tenant, e.flow, e.route, e.key))
                self._event(RowRef(e.tenant, e.flow, e.route, e.key), state, message, now)
                changed.append(e)
        return changed

    def events(self, tenant: str, flow: str, route: str, key: str) -> list[tuple[float, str, str | None]]:
        return list(self.db.execute("SELECT at, state, detail FROM ledger_events WHERE tenant=? AND "
                                    "flow=? AND route=? AND key=? ORDER BY id",
                                    (tenant, flow, route, key)))

    def _event(self, ref: RowRef, state: str, detail: str | None, at: float) -> None:
        self.db.execute("INSERT INTO ledger_events (tenant, flow, route, key, at, state, detail) "
                        "VALUES (?,?,?,?,?,?,?)",
                        (ref.tenant, ref.flow, ref.route, ref.key, at, state, detail))

    # -- dead letters -------------------------------------------------------------------
    def dead_letter(self, letter: DeadLetter) -> int:
        """Keep a record (or document) that failed, with the reason. One open letter per
        (flow, record, route, key): a repeat failure updates it."""
        now = self.now()
        where = (letter.tenant, letter.flow, letter.source_id, letter.route, letter.key)
        with self._tx():
            self._serialize(f"dead-letter:{letter.tenant}:{letter.flow}:{letter.source_id}")
            row = self.db.execute(
                "SELECT id FROM dead_letters WHERE tenant=? AND flow=? AND source_id=? AND "
                "route IS NOT DISTINCT FROM ? AND key IS NOT DISTINCT FROM ? AND status='open'",
                where).fetchone()
            values = (letter.reason, None if letter.record is None else canonical_json(letter.record),
                      None if letter.payload is None else canonical_json(letter.payload), now)
            if row:
                self.db.execute("UPDATE dead_letters SET reason=?, record=?, payload=?, created_at=? "
                                "WHERE id=?", (*values, row[0]))
                return row[0]
            return self._insert_id(
                "INSERT INTO dead_letters (tenant, flow, source_id, route, key, reason, record, "
                "payload, created_at) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id", (*where, *values))

    def dead_letters(self, tenant: str, flow: str | None = None,
                     status: str = "open") -> list[dict[str, Any]]:
        sql = ("SELECT id, flow, source_id, route, key, reason, record, payload, created_at, status "
               "FROM dead_letters WHERE tenant=? AND status=?")
        args: list[Any] = [tenant, status]
        if flow:
            sql += " AND flow=?"
            args.append(flow)
        names = ("id", "flow", "source_id", "route", "key", "reason", "record", "payload",
                 "created_at", "status")
        return [dict(zip(names, row)) for row in self.db.execute(sql + " ORDER BY id", args)]

    def open_dead_letter_sources(self, tenant: str, flow: str, source_ids: list[str]) -> set[str]:
        """Which of these records have open dead letters (one read for a page, so that a run
        only writes to close letters that exist)."""
        found: set[str] = set()
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in self.db.execute(
                f"SELECT DISTINCT source_id FROM dead_letters WHERE tenant=? AND flow=? AND "
                f"status='open' AND source_id IN ({marks})", (tenant, flow, *chunk)))
        return found

    def resolve_dead_letters(self, tenant: str, flow: str, source_id: str,
                             route: str | None = None, key: str | None = None) -> None:
        """Close open letters: the record's mapping failures (no route given), or the letter of
        one document once it was written."""
        self.db.execute("UPDATE dead_letters SET status='resolved' WHERE tenant=? AND flow=? AND "
                        "source_id=? AND route IS NOT DISTINCT FROM ? AND key IS NOT DISTINCT "
                        "FROM ? AND status='open'",
                        (tenant, flow, source_id, route, key))

    def holds_tenant(self, tenant: str) -> bool:
        """Whether the store holds anything of ``tenant``: a document, a run or a cursor. A
        store that holds nothing while a target holds the tenant's documents was lost."""
        return any(self.db.execute(f"SELECT 1 FROM {table} WHERE tenant=? LIMIT 1",
                                   (tenant,)).fetchone()
                   for table in ("ledger", "runs", "cursors"))

    def has_target_ref(self, tenant: str, connector: str, target_ref: str) -> bool:
        """Whether any ledger row knows this target ref (a result for it can be applied)."""
        return self.db.execute("SELECT 1 FROM ledger WHERE tenant=? AND connector=? AND "
                               "target_ref=? LIMIT 1", (tenant, connector, target_ref)).fetchone() is not None

    # -- inbox (webhook events received by `hexaflow serve`, docs/serve.md) -------------
    def put_inbox(self, tenant: str, connector: str, resource: str, record_id: str,
                  version: str | None, *, handled: bool = False) -> bool:
        """Store an event once; True when it is new (a repeated or concurrent delivery of
        the same version is a no-op that returns False). ``handled``: nothing is left to run
        for it (a delivery kept only to recognise its replays)."""
        now = self.now()
        cur = self.db.execute(
            "INSERT INTO inbox (tenant, connector, resource, record_id, version, received_at, "
            "handled_at) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT (tenant, connector, resource, record_id, version) DO NOTHING",
            # NULL is never equal to NULL in a unique key: an event without version is ''.
            (tenant, connector, resource, record_id, version or "", now,
             now if handled else None))
        return cur.rowcount == 1

    def inbox(self, tenant: str, *, pending: bool = False) -> list[dict[str, Any]]:
        sql = ("SELECT connector, resource, record_id, version, received_at, handled_at FROM inbox "
               "WHERE tenant=?" + (" AND handled_at IS NULL" if pending else "") +
               " ORDER BY received_at")
        names = ("connector", "resource", "record_id", "version", "received_at", "handled_at")
        return [dict(zip(names, row)) for row in self.db.execute(sql, (tenant,))]

    def mark_inbox_handled(self, tenant: str, connector: str, resource: str,
                           received_before: float) -> int:
        """Mark handled the events of this source that arrived before ``received_before`` (the
        start of the runs that read them); returns how many."""
        cur = self.db.execute(
            "UPDATE inbox SET handled_at=? WHERE tenant=? AND connector=? AND resource=? AND "
            "handled_at IS NULL AND received_at < ?",
            (self.now(), tenant, connector, resource, received_before))
        return cur.rowcount

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, tenant: str, flow: str) -> int:
        return self._insert_id("INSERT INTO runs (tenant, flow, started_at, status) "
                               "VALUES (?,?,?,?) RETURNING id", (tenant, flow, self.now(), "running"))

    def finish_run(self, run_id: int, status: str, summary: Any) -> None:
        self.db.execute("UPDATE runs SET finished_at=?, status=?, summary=? WHERE id=?",
                        (self.now(), status, canonical_json(summary), run_id))

    def runs(self, tenant: str, flow: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        sql = "SELECT id, flow, started_at, finished_at, status, summary FROM runs WHERE tenant=?"
        args: list[Any] = [tenant]
        if flow:
            sql += " AND flow=?"
            args.append(flow)
        names = ("id", "flow", "started_at", "finished_at", "status", "summary")
        return [dict(zip(names, row)) for row in
                self.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]

    # -- the status page's sessions and login throttle (statuspage_access.py) -------------
    def put_session(self, id_hash: str, csrf: str, seconds: float, keep: int) -> float:
        """Keep a new session (by the digest of its id) for ``seconds``; return when it
        expires. Expired sessions end, and beyond ``keep`` live ones the oldest end first."""
        now = self.now()
        with self._tx():
            self.db.execute("INSERT INTO status_sessions (id_hash, csrf, created_at, expires_at) "
                            "VALUES (?,?,?,?)", (id_hash, csrf, now, now + seconds))
            self.db.execute("DELETE FROM status_sessions WHERE expires_at <= ?", (now,))
            self.db.execute("DELETE FROM status_sessions WHERE created_at < (SELECT created_at "
                            "FROM status_sessions ORDER BY created_at DESC LIMIT 1 OFFSET ?)",
                            (keep - 1,))
        return now + seconds

    def session(self, id_hash: str) -> tuple[str, float] | None:
        """(CSRF token, expiry) of the live session with this digest of its id."""
        row = self.db.execute("SELECT csrf, expires_at FROM status_sessions WHERE id_hash=? AND "
                              "expires_at > ?", (id_hash, self.now())).fetchone()
        return (row[0], float(row[1])) if row else None

    def end_session(self, id_hash: str) -> None:
        self.db.execute("DELETE FROM status_sessions WHERE id_hash=?", (id_hash,))

    def login_failures(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LoginFailures]:
        """The failures kept for these (scope, name) keys (a key without any is left out)."""
        out: dict[tuple[str, str], LoginFailures] = {}
        for scope, name in keys:
            row = self.db.execute("SELECT failures, wait_until, recent FROM status_login_failures "
                                  "WHERE scope=? AND name=?", (scope, name)).fetchone()
            if row:
                out[(scope, name)] = LoginFailures(int(row[0]), float(row[1]),
                                                   tuple(json.loads(row[2])))
        return out

    def change_login_failures(self, keys: list[tuple[str, str]],
                              change: Callable[[float, dict[tuple[str, str], LoginFailures]],
                                               dict[tuple[str, str], LoginFailures]],
                              keep: int) -> None:
        """Read the failures of ``keys`` and write what ``change(now, failures)`` makes of them,
        as one step no other process interleaves with (two wrong tries at once both count).
        Beyond ``keep`` rows of a scope, the least recently changed are forgotten."""
        with self._tx():
            self._serialize("status-login-failures")
            now = self.now()
            changed = change(now, self.login_failures(keys))
            for (scope, name), failures in changed.items():
                self.db.execute(
                    "INSERT INTO status_login_failures (scope, name, failures, wait_until, recent, "
                    "updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT (scope, name) DO UPDATE SET "
                    "failures=excluded.failures, wait_until=excluded.wait_until, "
                    "recent=excluded.recent, updated_at=excluded.updated_at",
                    (scope, name, failures.count, failures.until, json.dumps(list(failures.recent)),
                     now))
            for scope in {scope for scope, _name in changed}:
                self.db.execute(
                    "DELETE FROM status_login_failures WHERE scope=? AND updated_at < (SELECT "
                    "updated_at FROM status_login_failures WHERE scope=? ORDER BY updated_at DESC "
                    "LIMIT 1 OFFSET ?)", (scope, scope, keep - 1))

    def clear_login_failures(self, keys: Iterable[tuple[str, str]]) -> None:
        for scope, name in keys:
            self.db.execute("DELETE FROM status_login_failures WHERE scope=? AND name=?",
                            (scope, name))


class SQLiteStore(StateStore):
    """The embedded store: one SQLite file in WAL mode, one connection per store."""

    def __init__(self, path: str):
        self.path = path
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if path == ":memory:":
            # yoyo migrates through a connection of its own, which cannot reach another
            # connection's in-memory database: a store that keeps nothing is a file in a
            # folder removed on close.
            self._scratch = tempfile.TemporaryDirectory(prefix="hexaflow-state-")
            path = str(Path(self._scratch.name) / "state.db")
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = path
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 30000")
        self._fence_checked: tuple[str, str, int] | None = None
        self._set_up()

    def _set_up(self) -> None:
        """WAL mode, then the schema migrations (hexaflow.migrate). Several processes may open
        a new state file at the same moment; switching the journal mode does not wait for a
        busy database, so it is tried again for a bounded time."""
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        from hexaflow.migrate import MIGRATION_TABLE, migrate
        migrate("sqlite", "sqlite:///" + quote(str(Path(self.file).resolve())),
                lambda: _applied(self.db, f"SELECT migration_id FROM {MIGRATION_TABLE}"),
                self._migration_lock)

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        # flock on the file's folder, not SQLite's own lock: yoyo writes through a connection
        # of its own meanwhile. Never on the state file itself: closing any other descriptor
        # of it would drop the POSIX locks SQLite holds on it in this process. The kernel frees
        # a flock when its holder dies.
        from hexaflow.migrate import wait_for
        folder = os.open(Path(self.file).resolve().parent, os.O_RDONLY)
        try:
            def take() -> bool:
                try:
                    fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    return False
            wait_for(take, f"the state file {self.path}")
            yield
        finally:
            os.close(folder)          # frees the flock

    def now(self) -> float:
        return time.time()

    def make_read_only(self) -> None:
        self.db.execute("PRAGMA query_only = ON")

    def check_usable(self) -> None:
        """StateError unless every page reads back and the file can be written (the write is
        undone). For a long-running process (serve), which must stop at start rather than fail
        at every run; it reads the whole file once."""
        with state_faults(self.path):
            problem = self.db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise state_fault(self.path, " ".join(problem.split())[:200]) or StateError(problem)
            version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(f"PRAGMA user_version = {version}")
            finally:
                self.db.execute("ROLLBACK")

    def close(self) -> None:
        self.db.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def transaction(self) -> "_Transaction":
        return _Transaction(self)

    # -- locks --------------------------------------------------------------------------
    def acquire_lock(self, tenant: str, flow: str, ttl: float = 600.0,
                     owner: str | None = None) -> int | None:
        owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        now = time.time()
        with self._tx():
            row = self.db.execute("SELECT owner, fence, expires_at FROM locks WHERE tenant=? AND flow=?",
                                  (tenant, flow)).fetchone()
            if row is not None and row[2] > now and row[0] != owner and not _holder_is_dead(row[0]):
                return None
            fence = (row[1] if row else 0) + 1
            self.db.execute(
                "INSERT INTO locks (tenant, flow, owner, fence, expires_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (tenant, flow) DO UPDATE SET owner=excluded.owner, "
                "fence=excluded.fence, expires_at=excluded.expires_at",
                (tenant, flow, owner, fence, now + ttl))
            return fence

    def lock_holder(self, tenant: str, flow: str) -> tuple[str, float] | None:
        row = self.db.execute("SELECT owner, expires_at FROM locks WHERE tenant=? AND flow=?",
                              (tenant, flow)).fetchone()
        return (row[0], row[1]) if row and row[1] > time.time() else None

    def renew_lock(self, tenant: str, flow: str, fence: int | None, ttl: float = 600.0) -> None:
        cur = self.db.execute("UPDATE locks SET expires_at=? WHERE tenant=? AND flow=? AND fence=?",
                              (time.time() + ttl, tenant, flow, fence))
        if cur.rowcount != 1:
            raise LostLock(f"flow {flow!r}: another run took the lock while this one was running, "
                           f"so this run stopped; what it wrote is kept: run it again once the "
                           f"other run has finished")

    def release_lock(self, tenant: str, flow: str, fence: int | None) -> None:
        self.db.execute("UPDATE locks SET expires_at=0 WHERE tenant=? AND flow=? AND fence=?",
                        (tenant, flow, fence))

    def _check_fence(self, tenant: str, flow: str, fence: int | None) -> None:
        if fence is None:
            return
        # Inside a write transaction the lock row cannot change under us: one check serves
        # every statement of the transaction (a batch plans and marks 100 rows at once).
        if self.db.in_transaction and self._fence_checked == (tenant, flow, fence):
            return
        row = self.db.execute("SELECT fence FROM locks WHERE tenant=? AND flow=?",
                              (tenant, flow)).fetchone()
        if row is not None and row[0] == fence and self.db.in_transaction:
            self._fence_checked = (tenant, flow, fence)
        if row is None or row[0] != fence:
            raise LostLock(f"flow {flow!r}: another run holds the lock now; this run stops writing "
                           f"(what it wrote is kept): run it again once the other run has finished")


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (or ROLLBACK on error); nested uses join the outer one."""

    def __init__(self, store: "SQLiteStore"):
        self.store = store
        self.db = store.db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self.outer:
            self.store._fence_checked = None
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
