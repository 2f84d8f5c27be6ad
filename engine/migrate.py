"""Versioned schema migrations of the state store, applied by yoyo-migrations when a store is
opened (docs/state.md, "Migrations"; docs/decisions/0005-state-migrations.md).

The migrations are the files of ``migrations/<backend>/``, applied in name order. yoyo keeps
the ids it applied in the store itself (table ``_yoyo_migration``); a store whose ids are all
there is left alone without importing or starting yoyo (every process and every status-page
request opens a store: that read is the whole cost once the schema is current).

Concurrent openers of a store that needs migrating (several processes started at once, an old
state file opened by every one of them) are serialised by a lock the operating system or the
database frees when its holder dies: ``flock`` on the SQLite file's folder, an advisory lock on
PostgreSQL. yoyo's own lock is a row that a killed process would leave behind; under ours no
live process can hold it, so a leftover one is removed first (``break_lock``).
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager
from importlib import resources
from typing import Callable

from hexaflow.errors import StateError

MIGRATION_TABLE = "_yoyo_migration"
LOCK_WAIT_S = 60.0


def migration_ids(backend: str) -> set[str]:
    """The ids (file names without their extension) of the backend's migrations."""
    folder = resources.files("hexaflow").joinpath("migrations", backend)
    return {entry.name.rsplit(".", 1)[0] for entry in folder.iterdir()
            if entry.name.endswith((".sql", ".py")) and not entry.name.startswith("_")}


def migrate(backend: str, yoyo_uri: str, applied: Callable[[], set[str]],
            exclusive: Callable[[], AbstractContextManager[None]]) -> None:
    """Bring the store to the current schema. ``applied`` reads the ids the store holds (an
    empty set where yoyo's table does not exist yet); ``exclusive`` is the lock that
    serialises migrating processes; ``yoyo_uri`` is the store as yoyo names it."""
    wanted = migration_ids(backend)
    if wanted <= applied():
        return
    with exclusive():
        if wanted <= applied():          # another process migrated while we waited
            return
        from yoyo import get_backend, read_migrations

        store = get_backend(yoyo_uri, migration_table=MIGRATION_TABLE)
        try:
            store.break_lock()
            with store.lock():
                store.apply_migrations(store.to_apply(
                    read_migrations(f"package:hexaflow:migrations/{backend}")))
        finally:
            store.connection.close()
    missing = wanted - applied()
    if missing:
        raise StateError(f"the state store's schema migrations {sorted(missing)} were not "
                         f"applied; see the log above")


def wait_for(take: Callable[[], bool], what: str) -> None:
    """Call ``take`` (a non-blocking lock attempt) until it succeeds, for a bounded time."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while not take():
        if time.monotonic() > deadline:
            raise StateError(f"{what} stayed locked by another process migrating the state "
                             f"store for {LOCK_WAIT_S:g} s; let it finish, then run again")
        time.sleep(0.05)
