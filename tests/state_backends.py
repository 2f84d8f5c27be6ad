"""The state store backends the state and reliability suites run on: an SQLite file in the
test's folder, and a PostgreSQL database of its own (created, then dropped), so that tests
running at the same time never share a store.

PostgreSQL is found through ``HEXAFLOW_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``: the development machines' and CI's server, trust
auth). Where none answers, its tests skip saying why; under ``CI=true`` that is a failure.
"""
from __future__ import annotations

import itertools
import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

BACKENDS = ("sqlite", "postgresql")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
_numbers = itertools.count(1)


def postgres_admin_url() -> str:
    return os.environ.get("HEXAFLOW_TEST_POSTGRES") or DEFAULT_POSTGRES


@lru_cache(maxsize=1)
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used here, or None."""
    try:
        import psycopg
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        return f"psycopg is not installed ({exc}): pip install -e '.[test]'"
    try:
        with psycopg.connect(postgres_admin_url(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at HEXAFLOW_TEST_POSTGRES={postgres_admin_url()} ({exc})"
    return None


def require_postgres() -> None:
    problem = _postgres_problem()
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
