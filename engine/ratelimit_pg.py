"""One rate-limit bucket per (system, account) for every process on a PostgreSQL state store.

Processes that share a store (serve processes, ``hexaflow run``s, workers) each used to pace
themselves with their own :class:`hexaflow.http.RateLimiter`: four of them at a shop's 4 calls/s
made 16/s and met 429s. :class:`SharedRateLimiter` keeps the same bucket in the row
``rate_limits (system, account)`` (migration postgresql/0003) instead.

**One rule, two stores.** The row holds exactly the state ``RateLimiter`` holds in memory —
``level`` (calls in the bucket at ``stamp``), ``blocked_until`` (the end of the latest
Retry-After), ``guessing`` (the level is the ``start_full`` guess) and ``capacity`` — and each
operation is the in-process method written as one SQL statement:

- ``acquire``: drain ``level`` by ``(now - stamp) · leak_rate`` (never below 0); if ``now <
  blocked_until`` the wait is ``blocked_until - now``; else if ``level + 1 <= capacity -
  headroom`` (at least 1) the token is taken (``level + 1``, ``stamp = now``), else the wait is
  ``(level + 1 - limit) / leak_rate``. The row is locked (``FOR UPDATE``) for that one
  statement, so concurrent takers are served one after the other; the caller sleeps the wait
  it is given and asks again, exactly as ``RateLimiter.acquire`` loops.
- ``observe(used, capacity)``: drain, then the first server count replaces the start-up guess
  (even when lower); after it the level only rises to the server's count, never falls below
  what other processes took.
- ``penalise(seconds)``: ``blocked_until = max(blocked_until, now + seconds)`` for every process.
- ``start_full`` applies when the row is created (the first process of the store to call the
  account): the level starts at ``capacity - headroom`` and ``guessing`` is set. A row that
  already exists says what the store's processes left in the bucket, drained by the time since.

``now`` is the server's ``clock_timestamp()`` (seconds since the epoch), so the processes' own
clocks do not matter; where a taker waited for the row's lock, ``now`` is never taken earlier
than the row's ``stamp`` (it drains no more than the time that really passed). ``leak_rate`` and
``headroom`` are the caller's (its configuration), ``capacity`` the row's (the server's, learnt
by ``observe``).

**When the store fails** (unreachable, a statement over :data:`STATEMENT_TIMEOUT_MS`), a call
is not held up: it takes its token from the process's own ``RateLimiter`` of the same account
(which is fed every ``observe`` and ``penalise`` too, so it knows the server's last count) and
one warning line is logged; the store is asked again :data:`RETRY_STORE_S` seconds later, and
a line at INFO says when it answers again. While on the fallback, each process paces only
itself, as before this module.
"""
from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from hexaflow.errors import StateError
from hexaflow.http import RateLimiter

log = logging.getLogger("hexaflow.http")

CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 3000
# A bucket's row need not survive a server crash (the first answers after it tell the count
# again), so a token's commit does not wait for the disk: a flush per call would cost more
# than the statement itself on a busy server.
ASYNC_COMMIT = "-c synchronous_commit=off"
RETRY_STORE_S = 5.0       # after a failure, calls use the in-process bucket for this long

_NOW = "(SELECT extract(epoch FROM clock_timestamp())::float8 AS t)"

CREATE = """
INSERT INTO rate_limits (system, account, capacity, level, stamp, blocked_until, guessing)
VALUES (%(system)s, %(account)s, %(capacity)s, %(start_level)s,
        extract(epoch FROM clock_timestamp())::float8, 0, %(start_full)s)
ON CONFLICT (system, account) DO NOTHING
"""

# The wait before this process may call (0: it took a token), or no row when the bucket's row
# does not exist (yet, or any more).
TAKE = f"""
WITH now AS {_NOW},
locked AS (
    SELECT r.system, r.account, r.level, r.stamp, r.blocked_until, r.capacity,
           greatest(r.stamp, now.t) AS at
    FROM rate_limits r, now
    WHERE r.system = %(system)s AND r.account = %(account)s
    FOR UPDATE OF r),
drained AS (
    SELECT system, account, at, blocked_until,
           greatest(0, level - (at - stamp) * %(rate)s) AS level,
           greatest(1, capacity - %(headroom)s) AS lim
    FROM locked),
decided AS (
    SELECT system, account, at, level,
           CASE WHEN blocked_until > at THEN blocked_until - at
                WHEN level + 1 <= lim THEN 0
                ELSE (level + 1 - lim) / %(rate)s END AS wait
    FROM drained),
taken AS (
    UPDATE rate_limits r SET level = d.level + 1, stamp = d.at
    FROM decided d
    WHERE r.system = d.system AND r.account = d.account AND d.wait <= 0)
SELECT wait FROM decided
"""

OBSERVE = f"""
WITH now AS {_NOW}
UPDATE rate_limits r SET
    capacity = coalesce(%(capacity)s, r.capacity),
    level = CASE WHEN r.guessing THEN %(used)s
                 ELSE greatest(%(used)s,
                               r.level - (greatest(r.stamp, now.t) - r.stamp) * %(rate)s, 0) END,
    stamp = greatest(r.stamp, now.t),
    guessing = false
FROM now
WHERE r.system = %(system)s AND r.account = %(account)s
"""

PENALISE = """
UPDATE rate_limits
SET blocked_until = greatest(blocked_until,
                             extract(epoch FROM clock_timestamp())::float8 + %(seconds)s)
WHERE system = %(system)s AND account = %(account)s
"""

class _Session:
    """This process's one connection to a store for all its limiters, and whether the store
    failed lately. One connection is plenty: a statement takes well under a millisecond, and
    a limiter must not wait on a failing store as long as a run's writes may (short connect and
    statement timeouts)."""

    def __init__(self, url: str):
        self.url = url
        self._conn: Any = None
        self._lock = threading.Lock()
        self._down_until = 0.0         # monotonic: until then, fall back without asking
        self._down = False             # failed, and has not answered since

    def run(self, sql: str, args: dict[str, Any]) -> list[tuple[Any, ...]] | None:
        """The statement's rows, or None when the store failed (the caller falls back)."""
        import psycopg
        if time.monotonic() < self._down_until:
            return None
        try:
            try:
                rows = self._execute(sql, args)
            except psycopg.errors.UndefinedTable:      # a store no process has migrated yet
                from hexaflow.state_pg import open_postgres
                open_postgres(self.url).close()
                rows = self._execute(sql, args)
        except (psycopg.Error, StateError) as exc:
            self._failed(exc)
            return None
        if self._down:
            self._down = False
            log.info("the shared rate limits in the state store answer again; calls take their "
                     "tokens from them")
        return rows

    def _execute(self, sql: str, args: dict[str, Any]) -> list[tuple[Any, ...]]:
        import psycopg

        from hexaflow.state_pg import KEEPALIVE
        with self._lock:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                    application_name=f"hexaflow-limits:{socket.gethostname()}:{os.getpid()}",
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} {ASYNC_COMMIT}",
                    **KEEPALIVE)
            try:
                cur = self._conn.execute(sql, args)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:      # the session may be gone: a new one next time
                self._close()
                raise

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_STORE_S
            first, self._down = not self._down, True
        if first:
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.warning("the shared rate limits in the state store failed (%s); this process "
                        "paces its own calls until the store answers again", reason)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()


_sessions: dict[str, _Session] = {}
_sessions_lock = threading.Lock()


def session(url: str) -> _Session:
    """This process's session for the limiters on ``url`` (made at first use)."""
    with _sessions_lock:
        if url not in _sessions:
            _sessions[url] = _Session(url)
        return _sessions[url]


@atexit.register
def close_sessions(url: str | None = None) -> None:
    """Close this process's limiter connections (to ``url`` only, when given)."""
    with _sessions_lock:
        for key in [k for k in _sessions if url is None or k == url]:
            _sessions.pop(key).close()


class SharedRateLimiter:
    """The bucket of (``system``, ``account``) in the store at ``url``, with ``local`` (the
    process's in-process bucket of the same numbers) as the fallback; see the module's
    docstring for the rule both keep."""

    def __init__(self, url: str, system: str, account: str, local: RateLimiter, *,
                 start_full: bool = False):
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.system = system
        self.account = account
        self.local = local
        self.start_full = start_full
        self._sleep: Callable[[float], None] = time.sleep
        self._session = session(self.url)
        self._created = False              # this object made sure the row exists

    # The numbers are the in-process bucket's: one configuration for both.
    @property
    def capacity(self) -> int:
        return self.local.capacity

    @property
    def leak_rate(self) -> float:
        return self.local.leak_rate

    @property
    def headroom(self) -> int:
        return self.local.headroom

    def _key(self) -> dict[str, Any]:
        return {"system": self.system, "account": self.account, "rate": float(self.leak_rate),
                "headroom": self.headroom}

    def _run(self, sql: str, args: dict[str, Any]) -> list[tuple[Any, ...]] | None:
        if not self._created:
            limit = max(1, self.capacity - self.headroom)
            made = self._session.run(CREATE, {
                "system": self.system, "account": self.account, "capacity": self.capacity,
                "start_full": self.start_full,
                "start_level": float(limit) if self.start_full else 0.0})
            if made is None:
                return None
            self._created = True
        return self._session.run(sql, args)

    def acquire(self) -> None:
        while True:
            rows = self._run(TAKE, self._key())
            if rows is None:
                self.local.acquire()
                return
            if not rows:                   # the row went away (a restored store): make it again
                self._created = False
                continue
            wait = float(rows[0][0])
            if wait <= 0:
                return
            self._sleep(max(wait, 0.001))

    def observe(self, used: int, capacity: int | None = None) -> None:
        self.local.observe(used, capacity)
        self._run(OBSERVE, {**self._key(), "used": float(used), "capacity": capacity or None})

    def penalise(self, seconds: float) -> None:
        self.local.penalise(seconds)
        self._run(PENALISE, {**self._key(), "seconds": float(seconds)})
