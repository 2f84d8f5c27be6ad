"""``hexaflow explain``: why one source record produces the documents it does.

For one record it shows every ``let`` value, every route's condition split into the parts
that made it true or false, the document keys, the ledger's decision for each document and the
exact payloads, through the same code a run uses (``Plan.evaluate``, ``history_of``,
``decide``). It never writes: the state store is opened read-only (and not created when it
does not exist), and ``--id`` only reads from the source connector (``read_one``).
See docs/init-and-explain.md.
"""
from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hexaflow.connector import ConnectorError
from hexaflow.environment import tenant_name
from hexaflow.expressions import jsonable, truthy
from hexaflow.jmespath_compiler import Part, condition_parts
from hexaflow.plan import Document, MappingError, Plan, RecordOutcome, Trace
from hexaflow.runner import (SEND, Connectors, FlowError, decide_with_store, history_of, load_plan,
                             resolve_flow_path)
from hexaflow.state import LIVE, SQLiteStore, StateStore, is_server_url, open_store, state_fault, state_path
from hexaflow.yamlload import SpecSyntaxError, read_data_file

EXIT_OK, EXIT_CONFIG, EXIT_RECORD_FAILED = 0, 1, 2
TEXT_VALUE_WIDTH = 160


# --------------------------------------------------------------------------- the state, read only
class ReadOnlyStore(SQLiteStore):
    """The state store opened read-only: the reading methods of SQLiteStore, no writes.

    ``mode=ro`` when a write-ahead log exists (another process may be writing: its newest
    rows are read too); otherwise ``immutable=1``, which does not even create SQLite's
    side files next to the database."""

    def __init__(self, path: Path, shown: str):  # noqa: D107 - no schema set-up, on purpose
        live = Path(str(path) + "-wal").exists()
        uri = path.resolve().as_uri() + ("?mode=ro" if live else "?mode=ro&immutable=1")
        self.path = shown
        self.file = str(path)
        self._scratch = None
        self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA query_only = ON")

    def _reads_stock(self) -> bool:
        # Not migrated here (it writes nothing): a file older than the column holds no stock.
        return any(row[1] == "stock" for row in self.db.execute("PRAGMA table_info(ledger)"))


def open_state_readonly(explicit: str | None) -> tuple[StateStore, str]:
    """(store, description). A state file that does not exist is not created: the ledger
    is then empty (an in-memory store). A PostgreSQL store is read in read-only sessions."""
    target = state_path(explicit)
    if is_server_url(target):
        server = open_store(target)
        server.make_read_only()
        return server, f"{server.path} (read only)"
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///"):]
    elif "://" in target:
        raise FlowError(f"HEXAFLOW_STATE={target.split('://')[0]}://…: not a state store; use "
                        f"a file path, sqlite:///path or postgresql://user@host/database")
    path = Path(target)
    if not path.exists():
        return SQLiteStore(":memory:"), f"{target} (does not exist yet: nothing written so far)"
    try:
        store = ReadOnlyStore(path, target)
        store.db.execute("SELECT 1 FROM ledger LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        fault = state_fault(target, exc)
        raise fault or FlowError(f"cannot read the state store {target}: {exc}") from None
    return store, f"{target} (read only)"


# --------------------------------------------------------------------------- conditions, explained
# A condition's parts come from the evaluation itself (Plan.condition with a tracer: the
# compiled expression reports the value of each part of its ``&&`` / ``||`` / ``!`` skeleton);
# explain only names the composite parts and shapes them for display.
Why = Part


def why_dict(node: Part) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": node.kind, "expr": node.text, "value": _json_value(node.value)}
    if node.error:
        out["error"] = node.error
    if node.children:
        out["children"] = [why_dict(c) for c in node.children]
    return out


def split_condition(source: str) -> Part:
    """The condition as a tree of parts (no values), as the evaluation reports it; one leaf
    when it is not a boolean operator at the top."""
    return _texts(condition_parts(source))


def _texts(node: Part) -> Part:
    """Fill in the text of composite parts (for display)."""
    for child in node.children:
        _texts(child)
    if node.kind == "not":
        inner = node.children[0]
        node.text = "!" + (inner.text if inner.kind == "leaf" and _simple(inner.text)
                           else f"({inner.text})")
    elif node.kind in ("and", "or"):
        op = " && " if node.kind == "and" else " || "
        node.text = op.join(c.text if c.kind in ("leaf", "not") or c.kind == node.kind
                            else f"({c.text})" for c in node.children)
    return node


def _simple(text: str) -> bool:
    return text.replace("_", "").isalnum()


def _flat(node: Why) -> list[Why]:
    """The parts of a chain of the same operator (``a && b && c``) as one list."""
    out = []
    for child in node.children:
        out.extend(_flat(child) if child.kind == node.kind else [child])
    return out


# --------------------------------------------------------------------------- one record
def _json_value(value: Any) -> Any:
    return json.loads(json.dumps(jsonable(value), default=str, ensure_ascii=False))


def _doc_target(doc: Document) -> str:
    return f"{doc.connector}/{doc.document}"


def _decisions(store: StateStore, tenant: str, docs: list[Document]) -> list[dict[str, Any]]:
    out = []
    ensured: set[tuple[str, str, str]] = set()
    for doc in docs:
        decision, reason = decide_with_store(store, tenant, doc)
        ensure = []
        for ens in doc.ensure:
            ident = (ens.connector, ens.document, ens.key)
            held = [e for e in store.entries_for_target(tenant, *ident) if e.state in LIVE]
            if decision != SEND:
                ens_decision, ens_reason = "skip", f"{doc.route} is not sent"
            elif held:
                ens_decision, ens_reason = "skip", f"already in the ledger ({held[0].state})"
            elif ident in ensured:
                ens_decision, ens_reason = "skip", "ensured by a document above"
            else:
                ens_decision = SEND
                ens_reason = f"sent first, unless {ens.connector} already holds it"
                ensured.add(ident)
            ensure.append({"name": ens.route.split(".", 1)[-1], "route": ens.route,
                           "target": _doc_target(ens), "action": ens.action, "key": ens.key,
                           "decision": ens_decision, "reason": ens_reason,
                           "payload": _json_value(ens.payload)})
        out.append({"route": doc.route, "target": _doc_target(doc), "action": doc.action,
                    "key": doc.key, "decision": decision, "reason": reason,
                    "payload": _json_value(doc.payload), "ensure": ensure})
    return out


def explain_record(plan: Plan, record: Any, store: StateStore, tenant: str) -> dict[str, Any]:
    """Everything ``explain`` shows about one record, as JSON-ready data."""
    result: dict[str, Any] = {"flow": plan.name, "file": str(plan.file), "tenant": tenant,
                              "alias": plan.source.alias, "record_id": None, "version": None,
                              "history": {}, "lets": {},
                              "routes": [], "matched": [], "documents": [], "error": None}
    history: dict[str, Any] = {}
    try:
        record_id = plan.record_id(record)
        result["record_id"] = record_id
        result["version"] = plan.record_version(record)
        entries = store.entries_for_sources(tenant, plan.name, [record_id]).get(record_id, [])
        history = history_of(entries)
    except MappingError as exc:
        result["error"] = str(exc)
    result["history"] = _json_value(history)
    if plan.reads_pending_stock:
        # As a run sees it, without its poll (explain writes nothing): the stock held by
        # documents not yet final, as the ledger knows them now.
        plan = plan.with_pending_stock(store.pending_stock(tenant, plan.source.connector))
    outcome: RecordOutcome | None = None
    trace = Trace()
    if result["error"] is None:
        try:
            outcome = plan.evaluate(record, history, tenant, trace)
        except MappingError as exc:
            result["error"] = str(exc)
    if outcome is None:
        try:     # what can still be shown: the lets and the conditions, without payloads
            trace = Trace()
            outcome = plan.evaluate(record, history, tenant, trace, documents=False)
        except MappingError:
            return result
    result["lets"] = {name: _json_value(outcome.lets[name]) for name, _ in plan.lets
                      if name in outcome.lets}
    result["matched"] = list(outcome.routes)
    routes = {r.name: r for r in plan.routes}
    for name, value, scope, why in trace.conditions:
        route = routes[name]
        entry: dict[str, Any] = {"route": name, "description": route.description,
                                 "action": route.action,
                                 "target": f"{route.connector}/{route.document}" if route.connector else None,
                                 "when": route.when.source if route.when is not None else None,
                                 "value": _json_value(value), "fires": truthy(value)}
        if route.each is not None:
            entry["position"] = scope.get("position")
            entry[route.each_as] = _json_value(scope.get(route.each_as))
        if why is not None:
            entry["why"] = why_dict(_texts(why))
        if route.lets and truthy(value) and route.action != "skip":
            lets = Trace()
            try:
                plan.route_lets(route, scope, lets)
            except MappingError as exc:
                failed = route.lets[len(lets.route_lets.get(name, []))][0]
                entry["error"] = f"let {failed}: {exc.reason}"
            entry["lets"] = {n: _json_value(v) for n, v in lets.route_lets.get(name, [])}
        result["routes"].append(entry)
    if result["error"] is None:
        result["documents"] = _decisions(store, tenant, outcome.documents)
    return result


# --------------------------------------------------------------------------- text
def _short(value: Any, width: int = TEXT_VALUE_WIDTH) -> str:
    if isinstance(value, dict) and set(value) == {"key", "state", "keys"}:
        # a `history.<route>` entry: which document, in which state
        keys = ", ".join(str(k) for k in (value["keys"] or [value["key"]]) if k)
        state = "fired above" if value["state"] == "planned" else value["state"]
        return f"{keys} ({state})" if keys else f"({state})"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + f"… ({len(text)} characters)"


def _mark(node: dict[str, Any]) -> str:
    if node.get("error"):
        return "!"
    return "✓" if truthy(node["value"]) else "✗"


def _why_lines(node: dict[str, Any], indent: str, out: list[str]) -> None:
    for child in _flat_dict(node):
        kind = child["kind"]
        mark = _mark(child)
        if child.get("error") and kind == "leaf":
            out.append(f"{indent}{mark} {child['expr']}: error: {child['error']}")
        elif kind == "leaf":
            out.append(f"{indent}{mark} {child['expr']} = {_short(child['value'], 100)}")
        elif kind == "not" and child["children"][0]["kind"] == "leaf":
            inner = child["children"][0]
            detail = (f"error: {inner['error']}" if inner.get("error")
                      else f"{inner['expr']} = {_short(inner['value'], 100)}")
            out.append(f"{indent}{mark} {child['expr']}   ({detail})")
        else:
            label = {"and": "all of:", "or": "any of:", "not": "not:"}[kind]
            out.append(f"{indent}{mark} {label}")
            _why_lines(child if kind != "not" else {"kind": "group", "children": child["children"]},
                       indent + "    ", out)


def _flat_dict(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts to list under ``node``: a chain of one operator is one list."""
    if node["kind"] in ("and", "or"):
        out: list[dict[str, Any]] = []
        for child in node["children"]:
            out.extend(_flat_dict(child) if child["kind"] == node["kind"] else [child])
        return out
    if node["kind"] == "group":
        return node["children"]
    return [node]


def _block(value: Any, indent: str) -> list[str]:
    text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return [indent + line for line in text.splitlines()]


def render_text(result: dict[str, Any], state: str) -> str:
    out: list[str] = []
    alias = result.get("alias") or "record"
    head = f"{result['flow']}: {alias} {result['record_id'] or '(no id)'}"
    if result.get("version"):
        head += f" (version {result['version']})"
    out += [head + f" · tenant {result['tenant']}", f"state: {state}", ""]
    out.append("history (documents the target already holds for this record)")
    if result["history"]:
        width = max(len(r) for r in result["history"])
        for route, held in result["history"].items():
            keys = held.get("keys") or [held.get("key")]
            out.append(f"  {route:<{width}}  {', '.join(map(str, keys))}  {held.get('state')}")
    else:
        out.append("  none")
    out += ["", "let"]
    for name, value in result["lets"].items():
        out.append(f"  {name} = {_short(value)}")
    if not result["lets"]:
        out.append("  (none)")
    out += ["", "routes (top to bottom; ✓ fires)"]
    for entry in result["routes"]:
        mark = "✓" if entry["fires"] else "✗"
        label = entry["route"]
        if "position" in entry:
            label += f" [{entry['position']}]"
        kind = entry["action"] if entry["action"] == "skip" else f"{entry['action']} {entry['target']}"
        out.append(f"  {mark} {label}  ({kind})")
        if entry["when"] is None:
            out.append("      when: always")
        else:
            out.append(f"      when {' '.join(entry['when'].split())}  → {_short(entry['value'], 60)}")
            why = entry.get("why")
            if why and why["kind"] == "and":          # "all of" is implied under `when`
                _why_lines(why, "        ", out)
            elif why and why["kind"] != "leaf":
                _why_lines({"kind": "group", "children": [why]}, "        ", out)
        for name, value in (entry.get("lets") or {}).items():
            out.append(f"      let {name} = {_short(value)}")
        if entry.get("error"):
            out.append(f"      error: {entry['error']}")
    out += ["", f"matched: {', '.join(result['matched']) or 'no route'}"]
    if result["error"]:
        out += ["", f"error: {result['error']}",
                "  (the record fails to map: a run keeps it as a dead letter and writes none of "
                "its documents)"]
        return "\n".join(out) + "\n"
    out += ["", "documents (what a run would do now)"]
    if not result["documents"]:
        out.append("  none")
    for n, doc in enumerate(result["documents"], 1):
        out.append(f"  {n}. {doc['route']} → {doc['target']}  {doc['action']}  key {doc['key']}")
        out.append(f"     decision: {doc['decision']} ({doc['reason']})")
        for ens in doc["ensure"]:
            out.append(f"     ensure {ens['name']} → {ens['target']}  key {ens['key']}: "
                       f"{ens['decision']} ({ens['reason']})")
            out += _block(ens["payload"], "       ")
        out.append("     payload:")
        out += _block(doc["payload"], "       ")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the command
def load_record_file(path: Path, plan: Plan) -> Any:
    """A record from a JSON or YAML file: the record itself, or wrapped as an API returns it
    (``{"order": {...}}``, ``{"orders": [{...}]}``, ``[{...}]``)."""
    data = read_data_file(path, str(path))
    if _has_id(plan, data):
        return data
    inner = data
    if isinstance(inner, dict) and len(inner) == 1:
        inner = next(iter(inner.values()))
    if isinstance(inner, list):
        if len(inner) != 1:
            raise FlowError(f"{path}: holds {len(inner)} records; give a file with one record")
        inner = inner[0]
    if _has_id(plan, inner):
        return inner
    return data        # explained as is: it has no id, which the output says


def _has_id(plan: Plan, data: Any) -> bool:
    try:
        plan.record_id(data)
        return True
    except MappingError:
        return False


def fetch_record(plan: Plan, record_id: str, tenant: str) -> Any:
    connectors = Connectors(tenant, plan.base_dir)
    source = plan.source
    try:
        reader = connectors.get(source.connector)
        record = reader.read_one(source.resource, record_id, source.params)
    finally:
        connectors.close()
    if record is None:
        raise FlowError(f"{source.connector} has no {source.resource} record with id {record_id}")
    return record


@dataclass(frozen=True)
class ExplainRequest:
    """What ``hexaflow explain`` was asked: the flow, the record (a file or an id in the
    source, one of them), the tenant, the state store (read only) and the output format."""
    flow: str
    record_file: str | None = None
    record_id: str | None = None
    tenant: str | None = None
    state: str | None = None
    fmt: str = "text"


def explain_command(request: ExplainRequest, out: TextIO | None = None,
                    err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    flow, record_file, record_id = request.flow, request.record_file, request.record_id
    state, fmt = request.state, request.fmt
    tenant = tenant_name(request.tenant)
    if (record_file is None) == (record_id is None):
        print("error: give the record: --record FILE or --id ID (one of them)", file=err)
        return EXIT_CONFIG
    store = None
    try:
        plan = load_plan(resolve_flow_path(flow))
        if record_file is not None:
            record = load_record_file(Path(record_file), plan)
        else:
            record = fetch_record(plan, str(record_id), tenant)
        store, shown = open_state_readonly(state)
        result = explain_record(plan, record, store, tenant)
    except FlowError as exc:
        for problem in exc.problems:
            print(problem.text(), file=err)
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    except SpecSyntaxError as exc:
        print(f"error: cannot read the record: {exc}", file=err)
        return EXIT_CONFIG
    except ConnectorError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    finally:
        if store is not None:
            store.close()
    if fmt == "json":
        out.write(json.dumps({"state": shown, **result}, ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(render_text(result, shown))
    return EXIT_RECORD_FAILED if result["error"] else EXIT_OK
