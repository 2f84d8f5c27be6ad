"""Key templates as runs used them, so that ``validate`` can warn when one changes.

A document's key is its identity in the ledger: the next run looks documents up by the key it
renders. Changing a route's ``key`` template (``DH_<<order.id>>`` → ``TL-<<order.name>>``)
therefore re-keys every document already written: the next run finds none of them, and sends
each again as a new document. Each run that writes records the key template of every route
(table ``key_templates``, created here, beside the state store's own tables); ``validate``
compares the flow's templates with the recorded ones and warns, with the number of documents
in the ledger under the old keys (docs/factoring.md).

A key often reads lets (``key: "<<refund.code>>"``, the code built once in a let), so what is
recorded is the key's identity: its template, plus the text of every flow-level let it reads,
through the key, the route's ``each`` and its own lets, and through those lets in turn. A let is
"read" when its name appears as a word in that text: a word in a string literal may add a let
that does not matter (a warning too many, never one too few). Lookup tables (settings.yaml)
are data, not part of the identity: a code prefix changed there is not warned about.
"""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hexaflow.problems import WARNING, Problem

if TYPE_CHECKING:
    from hexaflow.plan import Plan
    from hexaflow.spec import LoadedSpec
    from hexaflow.state import StateStore

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def key_identity(data: dict, route: dict) -> str | None:
    """The route's key template followed by ``name: text`` for each flow-level let it reads
    (see the module's docstring); None for a route without a key template."""
    key = route.get("key")
    if not isinstance(key, str):
        return None
    found = data.get("let")
    lets: dict = found if isinstance(found, dict) else {}
    pending = [key, _text(route.get("each")), _text(route.get("let"))]
    read: dict[str, str] = {}
    while pending:
        for word in _WORD.findall(pending.pop()):
            if word in lets and word not in read:
                read[word] = _text(lets[word])
                pending.append(read[word])
    return "\n".join([key, *(f"{name}: {read[name]}" for name in sorted(read))])


def _identities(data: object) -> dict[str, tuple[int, str]]:
    """Each keyed route's (index, identity), by name, of a flow's (resolved) data."""
    if not isinstance(data, dict):
        return {}
    found = {}
    for index, route in enumerate(data.get("routes") or []):
        identity = key_identity(data, route) if isinstance(route, dict) else None
        if identity is not None:
            found[str(route.get("name"))] = (index, identity)
    return found


def record_key_templates(store: StateStore, tenant: str, plan: Plan) -> None:
    """Remember the key identity of each of ``plan``'s routes for ``tenant`` (a run writes)."""
    now = store.now()
    rows = [(tenant, plan.name, name, identity, now)
            for name, (_, identity) in _identities(plan.spec.data).items()]
    store.db.executemany(
        "INSERT INTO key_templates (tenant, flow, route, template, recorded_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, flow, route) DO UPDATE SET "
        "template = excluded.template, recorded_at = excluded.recorded_at", rows)


def recorded_templates(db: Any, flow: str) -> list[tuple[str, str, str]]:
    """(tenant, route, template) recorded for ``flow``; none in a store that has no table."""
    try:
        return db.execute("SELECT tenant, route, template FROM key_templates "
                          "WHERE flow = ? ORDER BY tenant, route", (flow,)).fetchall()
    except sqlite3.OperationalError:        # an older store, or one opened read-only: no table
        return []


def key_change_problems(spec: LoadedSpec, db: Any) -> list[Problem]:
    """A warning on each route whose key template differs from the one its last writing run
    used, while the ledger (in the state store ``db``) holds documents of that route."""
    data = spec.data if isinstance(spec.data, dict) else {}
    if not isinstance(data.get("flow"), str):
        return []
    routes = _identities(data)
    problems = []
    for tenant, name, old in recorded_templates(db, data["flow"]):
        index, new = routes.get(name, (None, None))
        if index is None or new is None or new == old:
            continue
        count = db.execute("SELECT COUNT(*) FROM ledger WHERE tenant = ? AND flow = ? "
                           "AND route = ?", (tenant, data["flow"], name)).fetchone()[0]
        if not count:
            continue
        whose = "" if tenant == "default" else f" of tenant {tenant!r}"
        problems.append(spec.problem(
            ("routes", index, "key"),
            f"route {name}'s {_change(old, new)}: {count} "
            f"document(s){whose} already in the ledger under the old keys will not be found "
            f"(they are re-keyed)",
            "the next run would send each of them again as a new document: keep the old "
            "template, or make the change on purpose (see what the run would send with "
            "`hexaflow run --dry-run`)",
            severity=WARNING))
    return problems


def _change(old: str, new: str) -> str:
    """What changed between two identities, as the warning names it."""
    old_key, *old_lets = old.split("\n")
    new_key, *new_lets = new.split("\n")
    if old_key != new_key:
        return f"key template changed from {old_key!r} to {new_key!r}"
    changed = sorted({line.split(": ", 1)[0] for line in set(old_lets) ^ set(new_lets)})
    return (f"key {new_key!r} reads the let(s) {', '.join(changed)}, changed since the last "
            f"writing run")


def key_change_warnings(files: list[str], state: str | None = None) -> list[Problem]:
    """The warnings of :func:`key_change_problems` for flow files, against the state store
    ``state`` (HEXAFLOW_STATE, or the default) when it exists, opened read-only. Nothing is
    parsed (nor imported) unless the store has recorded key templates."""
    from hexaflow.state import is_server_url, open_store, state_path

    target = state_path(state).removeprefix("sqlite:///")
    if is_server_url(target):
        store = open_store(target)
        try:
            store.make_read_only()
            return _warnings(files, store.db)
        finally:
            store.close()
    if "://" in target or not Path(target).is_file():
        return []
    path = Path(target)
    live = Path(f"{target}-wal").exists()     # as explain's read-only store opens it
    uri = path.resolve().as_uri() + ("?mode=ro" if live else "?mode=ro&immutable=1")
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error:
        return []
    try:
        try:
            if not db.execute("SELECT 1 FROM key_templates LIMIT 1").fetchall():
                return []
        except sqlite3.Error:        # not a state store, or one no run has recorded in
            return []
        return _warnings(files, db)
    finally:
        db.close()


def _warnings(files: list[str], db: Any) -> list[Problem]:
    """key_change_problems of each flow file that loads, against the store's ``db``."""
    from hexaflow.errors import HexaflowError
    from hexaflow.spec import load_spec
    problems: list[Problem] = []
    for file in files:
        try:
            spec = load_spec(Path(file))
        except HexaflowError:
            continue
        try:
            problems += key_change_problems(spec, db)
        except sqlite3.Error:
            return problems
    return problems
