"""The PostgreSQL state store: the operations of hexaflow.state.StateStore on a server that
several processes, on several machines, share (``HEXAFLOW_STATE=postgresql://…``).

psycopg 3 with a connection pool per process and URL (psycopg_pool): a statement outside a
transaction borrows a connection for itself; a transaction holds one until it ends. The SQL
is the shared one (``?`` marks become psycopg's ``%s``). Differences from SQLite, and why:

- **The flow lock** is a session advisory lock, ``pg_try_advisory_lock(hashtextextended(
  'hexaflow:' || tenant || ':' || flow, 0))``, on a connection of its own held for the run: the
  server frees it the moment that session ends (the process died, the network failed), so a
  killed run never holds the next one back. Taking it increments the flow's fencing number
  (``locks.fence``), and every cursor and ledger write checks the number under a row lock
  (``FOR SHARE``) held to its commit: a run whose lock session was lost cannot commit after
  another run took the lock (LostLock, as on SQLite).
- **Time** comes from the server (``clock_timestamp()``), so every process records and
  compares times on one clock.
- **Read-then-write operations** (applying a result, keeping a dead letter) take a
  transaction-scoped advisory lock on what they change, where SQLite's write transactions are
  serial anyway.

Installed with the ``server`` extra (``pip install 'hexaflow[server]'``); imported only when a
store URL names PostgreSQL.
"""
from __future__ import annotations

import atexit
import os
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

from hexaflow.environment import state_pool_max
from hexaflow.errors import LostLock, StateError
from hexaflow.state import StateStore

CONNECT_TIMEOUT_S = 10
# How long a new lock holder waits for a frozen run's transaction before ending its sessions,
# and how many times it tries.
STALE_WAIT_S, STALE_ROUNDS = 2.0, 5
# A partitioned run loses its lock session within about this many seconds (TCP keepalives),
# not after the kernel's two hours.
KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
             "keepalives_count": 3}
_LOCK_KEY = "hashtextextended('hexaflow:' || %s || ':' || %s, 0)"


def shown(url: str) -> str:
    """The URL as messages show it: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def server_fault(url: str, exc: BaseException) -> StateError:
    """The StateError for a failure of the server (unreachable, restarted, refusing us)."""
    reason = " ".join(str(exc).split())[:300] or type(exc).__name__
    return StateError(f"HEXAFLOW_STATE={shown(url)}: the PostgreSQL state store failed "
                      f"({reason}); check that the server runs and accepts this user, then "
                      f"run again")


@lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """The shared SQL with psycopg's marks. hexaflow's statements hold no ``?`` or ``%`` in a
    literal (values are always parameters), so the replacement is exact."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Rows:
    """What a statement gave, read at once (the connection goes back to the pool)."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int):
        self.rows, self.rowcount = rows, rowcount

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class _Db:
    """``execute`` / ``executemany`` as the store's shared SQL (and its callers) use them."""

    def __init__(self, store: "PostgresStore"):
        self.store = store

    def execute(self, sql: str, args: Iterable[Any] = ()) -> _Rows:
        with self.store._lost_lock_faults(), self.store._connection() as conn:
            cur = conn.execute(_pg_sql(sql), tuple(args))
            rows = cur.fetchall() if cur.description else []
            return _Rows(rows, cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        with self.store._connection() as conn:
            conn.cursor().executemany(_pg_sql(sql), [tuple(r) for r in rows])


_pools: dict[tuple[str, bool], Any] = {}
_migrated: set[str] = set()        # URLs whose schema this process has brought up to date
_pools_lock = threading.Lock()


def _pool(url: str, read_only: bool) -> Any:
    """This process's pool for ``url`` (one for read-only sessions: the status page's)."""
    from psycopg_pool import ConnectionPool

    key = (url, read_only)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            options = "-c default_transaction_read_only=on" if read_only else None
            kwargs: dict[str, Any] = {"autocommit": True, "application_name": _owner("hexaflow"),
                                      "connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVE}
            if options:
                kwargs["options"] = options
            pool = ConnectionPool(url, min_size=1, max_size=state_pool_max(), kwargs=kwargs, open=False,
                                  timeout=30, name=f"hexaflow-state{'-ro' if read_only else ''}")
            pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            _pools[key] = pool
        return pool


@atexit.register
def close_pools(url: str | None = None) -> None:
    """Close this process's pools (of ``url`` only, when given): their sessions end, and the
    schema is checked again when the store is next opened."""
    with _pools_lock:
        for key in [k for k in _pools if url is None or k[0] == url]:
            _pools.pop(key).close()
        _migrated.difference_update({u for u in _migrated if url is None or u == url})


def _owner(prefix: str) -> str:
    """host:pid of this process, as the SQLite store names a lock's holder."""
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}"


@dataclass
class _HeldLock:
    conn: Any            # the session that holds the advisory lock
    fence: int


def open_postgres(url: str) -> "PostgresStore":
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise StateError(f"HEXAFLOW_STATE={shown(url)}: the PostgreSQL state store needs the "
                         f"server extra: pip install 'hexaflow[server]'") from None
    try:
        return PostgresStore(url)
    except StateError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("psycopg", "yoyo")):
            raise server_fault(url, exc) from None
        raise


class PostgresStore(StateStore):
    dialect = "postgresql"

    def __init__(self, url: str):
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.path = shown(self.url)
        self._read_only = False
        self._conn: Any = None          # the connection of the open transaction
        self._fence_checked: tuple[str, str, int] | None = None
        self._locks: dict[tuple[str, str], _HeldLock] = {}
        self._pool = _pool(self.url, False)
        self.db = _Db(self)
        self._migrate()

    # -- connections and transactions --------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._conn is not None:
            yield self._conn
        else:
            with self._pool.connection() as conn:
                yield conn

    @contextmanager
    def _lost_lock_faults(self) -> Iterator[None]:
        """A server error while this process holds a flow lock whose session has ended (a
        partition, or the next holder ending a frozen run's sessions) is a LostLock."""
        try:
            yield
        except Exception as exc:
            if type(exc).__module__.startswith("psycopg") and self._lost_a_lock():
                raise LostLock("this run lost its flow lock (its PostgreSQL session ended) while "
                               "it was writing, so it stopped; what it committed is kept: run it "
                               "again once the other run has finished") from None
            raise

    def _lost_a_lock(self) -> bool:
        for held in list(self._locks.values()):
            try:
                held.conn.execute("SELECT 1")
            except Exception:
                return True
        return False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._conn is not None:        # nested: joins the outer transaction
            yield
            return
        with self._lost_lock_faults(), self._pool.connection() as conn:
            conn.execute("BEGIN")
            self._conn = conn
            try:
                yield
            except BaseException:
                self._conn = None
                self._fence_checked = None
                conn.execute("ROLLBACK")
                raise
            self._conn = None
            self._fence_checked = None
            conn.execute("COMMIT")

    def transaction_connection(self) -> Any:
        """The connection of the open transaction (None outside one): a job deferred on it is
        kept only if the transaction commits."""
        return self._conn

    def now(self) -> float:
        row = self.db.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        assert row is not None
        return float(row[0])

    def _serialize(self, key: str) -> None:
        self.db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 1))", (key,))

    def make_read_only(self) -> None:
        self._read_only = True
        self._pool = _pool(self.url, True)

    def check_usable(self) -> None:
        with self._connection() as conn:
            ok = conn.execute("SELECT has_table_privilege('ledger', 'INSERT, UPDATE')").fetchone()
        if not ok or not ok[0]:
            raise StateError(f"HEXAFLOW_STATE={self.path}: this user cannot write the state "
                             f"store's tables; grant it INSERT and UPDATE on them")

    def close(self) -> None:
        for tenant, flow in list(self._locks):
            self.release_lock(tenant, flow, self._locks[(tenant, flow)].fence)

    # -- migrations ---------------------------------------------------------------------
    def _migrate(self) -> None:
        # Once per process and URL: serve opens a store per request, and the schema a process
        # saw up to date stays so (a newer hexaflow only adds migrations it will apply itself).
        if self.url in _migrated:
            return
        self._apply_migrations()
        _migrated.add(self.url)

    def _apply_migrations(self) -> None:
        from hexaflow.migrate import MIGRATION_TABLE, migrate

        def applied() -> set[str]:
            with self._connection() as conn:
                exists = conn.execute("SELECT to_regclass(%s)", (MIGRATION_TABLE,)).fetchone()
                if not exists or exists[0] is None:
                    return set()
                return {r[0] for r in conn.execute(f"SELECT migration_id FROM {MIGRATION_TABLE}")}

        migrate("postgresql", self.url.replace("postgresql://", "postgresql+psycopg://", 1),
                applied, self._migration_lock)

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        import psycopg

        from hexaflow.migrate import wait_for
        with psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            def take() -> bool:
                row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended("
                                   "'hexaflow:migrations', 0))").fetchone()
                return bool(row and row[0])
            wait_for(take, f"the state store {self.path}")
            yield         # closing the session frees the lock

    # -- the flow lock ------------------------------------------------------------------
    def acquire_lock(self, tenant: str, flow: str, ttl: float = 600.0,
                     owner: str | None = None) -> int | None:
        import psycopg

        owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name=f"hexaflow-lock:{owner}"[:63], **KEEPALIVE)
        try:
            got = conn.execute(f"SELECT pg_try_advisory_lock({_LOCK_KEY})", (tenant, flow)).fetchone()
            if not got or not got[0]:
                conn.close()
                return None
            row = self._count_fence_up(conn, (tenant, flow, owner, ttl))
        except BaseException:
            conn.close()
            raise
        assert row is not None
        self._locks[(tenant, flow)] = _HeldLock(conn, int(row[0]))
        return int(row[0])

    def _count_fence_up(self, conn: Any, args: tuple[str, str, str, float]) -> Any:
        """The lock's new fencing epoch. A run that lost the lock may be frozen inside a write
        transaction whose fence check (FOR SHARE) still holds the row, and the update waits for
        it. This process holds the advisory lock, so whatever blocks the update is such a stale
        run: after a short wait its sessions are ended (its writes would fail the fence anyway)."""
        result: dict[str, Any] = {}

        def bump() -> None:
            try:
                result["row"] = conn.execute(
                    "INSERT INTO locks (tenant, flow, owner, fence, expires_at) VALUES "
                    "(%s, %s, %s, 1, extract(epoch FROM clock_timestamp()) + %s) "
                    "ON CONFLICT (tenant, flow) DO UPDATE SET owner=excluded.owner, "
                    "fence=locks.fence + 1, expires_at=excluded.expires_at RETURNING fence",
                    args).fetchone()
            except BaseException as exc:      # raised below, in the caller's thread
                result["error"] = exc

        worker = threading.Thread(target=bump, name="hexaflow-fence", daemon=True)
        worker.start()
        for _ in range(STALE_ROUNDS):
            worker.join(STALE_WAIT_S)
            if not worker.is_alive():
                break
            for (pid,) in self.db.execute("SELECT unnest(pg_blocking_pids(?))",
                                          (conn.info.backend_pid,)).fetchall():
                self.db.execute("SELECT pg_terminate_backend(?)", (pid,))
        worker.join(STALE_WAIT_S)
        if worker.is_alive():
            raise StateError(f"HEXAFLOW_STATE={self.path}: the flow lock's row stays locked by "
                             f"another session that cannot be ended; end it on the server, then "
                             f"run again")
        if "error" in result:
            raise result["error"]
        return result["row"]

    def lock_holder(self, tenant: str, flow: str) -> tuple[str, float] | None:
        # The advisory lock is the truth (its session may have ended without a word); the
        # row says who took it last. A bigint key is held as (classid, objid) = (high, low).
        row = self.db.execute(
            "SELECT l.owner, l.expires_at FROM locks l WHERE l.tenant=? AND l.flow=? AND EXISTS "
            "(SELECT 1 FROM pg_locks p WHERE p.locktype='advisory' AND p.granted AND "
            "p.database=(SELECT oid FROM pg_database WHERE datname=current_database()) AND "
            "p.objsubid=1 AND ((p.classid::bigint << 32) | p.objid::bigint) = "
            "hashtextextended('hexaflow:' || l.tenant || ':' || l.flow, 0))",
            (tenant, flow)).fetchone()
        return (row[0], row[1]) if row else None

    def renew_lock(self, tenant: str, flow: str, fence: int | None, ttl: float = 600.0) -> None:
        held = self._locks.get((tenant, flow))
        try:
            row = None if held is None or held.fence != fence else held.conn.execute(
                "UPDATE locks SET expires_at=extract(epoch FROM clock_timestamp()) + %s WHERE "
                "tenant=%s AND flow=%s AND fence=%s RETURNING fence",
                (ttl, tenant, flow, fence)).fetchone()
        except Exception as exc:       # the lock's session is gone: so is the lock
            if not type(exc).__module__.startswith("psycopg"):
                raise
            row = None
        if row is None:
            raise LostLock(f"flow {flow!r}: another run took the lock while this one was running, "
                           f"so this run stopped; what it wrote is kept: run it again once the "
                           f"other run has finished")

    def release_lock(self, tenant: str, flow: str, fence: int | None) -> None:
        held = self._locks.get((tenant, flow))
        if held is None or held.fence != fence:
            return
        del self._locks[(tenant, flow)]
        try:
            held.conn.execute("UPDATE locks SET expires_at=0 WHERE tenant=%s AND flow=%s AND "
                              "fence=%s", (tenant, flow, fence))
            held.conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})", (tenant, flow))
        except Exception as exc:       # the session is gone already, and its lock with it
            if not type(exc).__module__.startswith("psycopg"):
                raise
        finally:
            held.conn.close()

    def _check_fence(self, tenant: str, flow: str, fence: int | None) -> None:
        if fence is None:
            return
        # The row lock (FOR SHARE) lasts to the commit: a run taking the lock meanwhile waits
        # for this transaction, so one check serves every statement of it.
        if self._conn is not None and self._fence_checked == (tenant, flow, fence):
            return
        row = self.db.execute("SELECT fence FROM locks WHERE tenant=? AND flow=? FOR SHARE",
                              (tenant, flow)).fetchone()
        if row is None or row[0] != fence:
            raise LostLock(f"flow {flow!r}: another run holds the lock now; this run stops writing "
                           f"(what it wrote is kept): run it again once the other run has finished")
        if self._conn is not None:
            self._fence_checked = (tenant, flow, fence)
