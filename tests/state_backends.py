"""The state store backends the state and reliability suites run on: an SQLite file in the
test's folder, and a PostgreSQL database of its own (created, then dropped), so that tests
running at the same time never share a store.

PostgreSQL is found through ``HEXAFLOW_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``: the development machines' and CI's server, trust
auth). Where none answers and Debian's PostgreSQL binaries are installed
(``/usr/lib/postgresql/*/bin/initdb``), the process starts a throwaway cluster of its own and
stops it at exit; without them, its tests skip saying why. Under ``CI=true`` a missing
PostgreSQL is a failure.
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

BACKENDS = ("sqlite", "postgresql")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
THROWAWAY_START_S = 60.0
_numbers = itertools.count(1)


def configured_postgres_url() -> str:
    return os.environ.get("HEXAFLOW_TEST_POSTGRES") or DEFAULT_POSTGRES


def postgres_admin_url() -> str:
    """The URL tests make their databases through: the configured server, or the throwaway one."""
    url, problem = _postgres()
    assert url is not None, problem
    return url


def _unreachable(url: str) -> str | None:
    """Why no PostgreSQL answers at ``url``, or None."""
    import psycopg
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


@lru_cache(maxsize=1)
def _postgres() -> tuple[str | None, str | None]:
    """(admin URL, None) of the PostgreSQL this process uses, or (None, why there is none)."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return None, f"psycopg is not installed ({exc}): pip install -e '.[test]'"
    configured = configured_postgres_url()
    problem = _unreachable(configured)
    if problem is None:
        return configured, None
    missing = f"no PostgreSQL at HEXAFLOW_TEST_POSTGRES={configured} ({problem})"
    initdb = debian_initdb()
    if initdb is None:
        return None, (f"{missing}, and no Debian PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb) "
                      "to start a throwaway cluster with: apt-get install postgresql")
    try:
        return ThrowawayCluster.start(initdb.parent).url, None
    except (OSError, subprocess.SubprocessError, ThrowawayClusterError) as exc:
        return None, f"{missing}; a throwaway cluster with {initdb.parent} did not start: {exc}"


def debian_initdb() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin/initdb`` with its pg_ctl, or None."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
             if os.access(p, os.X_OK) and os.access(Path(p).parent / "pg_ctl", os.X_OK)]
    return max(found, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, default=None)


class ThrowawayClusterError(Exception):
    pass


class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary folder, for this process only: trust auth, on a free
    loopback port, its unix socket in that folder, durability off (nothing in it outlives the
    process), stopped and removed at exit.

    Each pytest-xdist worker starts its own: measured on 2 cores, initdb and start take ~0.65 s
    for one cluster and ~2.0 s for three started at once, once per worker per suite; sharing one
    between workers would save about a second, at the price of a cross-process count of who
    still uses it to know who stops it."""

    def __init__(self, bin_dir: Path, folder: Path, port: int):
        self.bin_dir = bin_dir
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @classmethod
    def start(cls, bin_dir: Path) -> "ThrowawayCluster":
        folder = Path(tempfile.mkdtemp(prefix="hexaflow-test-pg-"))
        cluster = cls(bin_dir, folder, _free_port())
        atexit.register(cluster.stop)
        user = _server_user()
        if user is not None:        # initdb and postgres refuse to run as root
            os.chown(folder, user.pw_uid, user.pw_gid)
        began = time.monotonic()
        cluster._pg("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
                    "-E", "UTF8", "--no-sync")
        options = (f"-p {cluster.port} -k {folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        cluster._pg("pg_ctl", "-D", str(cluster.data), "-l", str(folder / "server.log"), "-w",
                    "-t", str(int(THROWAWAY_START_S)), "-o", options, "start")
        # shown with -s (and on a failure): which server the suites used, and its cost
        print(f"throwaway PostgreSQL at {cluster.url}, data in {cluster.data}, started in "
              f"{time.monotonic() - began:.2f} s", file=sys.stderr)
        return cluster

    def _pg(self, program: str, *args: str) -> None:
        user = _server_user()
        done = subprocess.run([str(self.bin_dir / program), *args], capture_output=True, text=True,
                              timeout=THROWAWAY_START_S + 10, cwd=self.folder,
                              user=user.pw_uid if user else None, group=user.pw_gid if user else None)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise ThrowawayClusterError(f"{program} exited {done.returncode}: "
                                        f"{(done.stderr or done.stdout).strip()[-800:]} {tail}".strip())

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
            except (OSError, subprocess.SubprocessError, ThrowawayClusterError):
                pass            # at exit there is no one to tell; the folder goes all the same
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the throwaway server: None (this user) unless this is root, which the server
    refuses to be; then Debian's ``postgres`` user, else ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ThrowawayClusterError("running as root with neither a postgres nor a nobody user to run the server")


def require_postgres() -> None:
    _url, problem = _postgres()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs PostgreSQL for the state suites: {problem}")
    pytest.skip(problem)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class StateTarget:
    """One test's state store: ``str(target)`` is what HEXAFLOW_STATE gets."""

    def __init__(self, backend: str, setting: str):
        self.backend = backend
        self.setting = setting

    def __str__(self) -> str:
        return self.setting

    def __fspath__(self) -> str:      # where a test passes it as a path (SQLite only)
        assert self.backend == "sqlite", "a PostgreSQL store is not a file"
        return self.setting

    def exists(self) -> bool:
        """Whether a run created the store's tables."""
        if self.backend == "sqlite":
            return Path(self.setting).exists()
        return bool(self.rows("SELECT 1 FROM pg_tables WHERE tablename='ledger'"))

    def rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        """Read (``?`` marks); [] where the tables do not exist yet."""
        if self.backend == "sqlite":
            db = sqlite3.connect(f"file:{self.setting}?mode=ro", uri=True, timeout=30)
            db.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in db.execute(sql, args)]
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc) or "unable to open" in str(exc):
                    return []
                raise
            finally:
                db.close()
        import psycopg
        from psycopg.rows import dict_row
        with psycopg.connect(self.setting, autocommit=True, row_factory=dict_row) as conn:
            try:
                return list(conn.execute(sql.replace("?", "%s"), args))
            except psycopg.errors.UndefinedTable:
                return []

    def execute(self, sql: str, args: tuple = ()) -> None:
        """Write (``?`` marks), committed at once."""
        if self.backend == "sqlite":
            db = sqlite3.connect(self.setting, timeout=30)
            try:
                db.execute(sql, args)
                db.commit()
            finally:
                db.close()
            return
        import psycopg
        with psycopg.connect(self.setting, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), args)

    def take_lock_from(self, pid: int) -> None:
        """Make process ``pid`` lose its flow lock as a run stalled past it would: on SQLite its
        lock expires (what LOCK_TTL does to a run stalled longer than 600 s); on PostgreSQL its
        lock session ends (what a network partition or a killed connection does)."""
        if self.backend == "sqlite":
            self.execute("UPDATE locks SET expires_at=0 WHERE owner LIKE ?", (f"%:{pid}",))
            return
        ended = self.rows("SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE "
                          "application_name LIKE ?", (f"hexaflow-lock:%:{pid}",))
        assert ended and all(r["ended"] for r in ended), f"process {pid} holds no lock session"


def make_target(backend: str, folder: Path, request: pytest.FixtureRequest) -> StateTarget:
    if backend == "sqlite":
        return StateTarget("sqlite", str(folder / "state.db"))
    require_postgres()
    import psycopg
    name = f"hexaflow_test_{os.getpid()}_{next(_numbers)}"
    admin = postgres_admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')

    url = _with_database(admin, name)

    def drop() -> None:
        from hexaflow.state_pg import close_pools
        close_pools(url)           # this process's pooled sessions on it
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    request.addfinalizer(drop)
    return StateTarget("postgresql", url)
