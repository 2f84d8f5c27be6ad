"""Compiling a flow spec into a Plan, and mapping one record through it.

A Plan is built once per run: every expression and template is compiled, every lookup table
loaded, every connector and resource checked. ``Plan.evaluate`` then maps a record to the
documents it produces without parsing anything.

Field values (see docs/flows.md):
- ``"=expr"``: JMESPath.                 - text containing ``<<``: a template (always text).
- any other scalar: a constant.          - ``{const: x}``: a constant, verbatim.
- a mapping: nested fields.              - a list: a list of values.
- ``{each: expr, as: name, when: expr, fields: {...}}``: one object per array element.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, Mapping

from hexaflow.errors import MappingError
from hexaflow.connector import Catalogue, DocumentDraft
from hexaflow.expressions import (CompileError, Expr, ExpressionCompiler, Fn, Scope, Template,
                                  jsonable, truthy)
from hexaflow.jmespath_compiler import Part
from hexaflow.functions import FunctionContext, Library, RecordError, failure_reason
from hexaflow.lookups import ConnectorLookup, TableError, load_table
from hexaflow.money import to_json_number
from hexaflow.problems import ERROR, WARNING, Problem, did_you_mean, path_text
from hexaflow.registry import connector_names, get_connector
from hexaflow.spec import LoadedSpec, schema_problems
from hexaflow.timeutil import DEFAULT_TIMEZONE, get_zone

RESERVED_NAMES = frozenset({"tenant", "history", "position", "pending_stock"})
# The scope name of the stock that documents not yet final in the source's system will still
# move (place → item → signed quantity; docs/state.md, "Stock held by open documents").
PENDING_STOCK = "pending_stock"
ACTIONS_WITH_KEY = ("upsert", "create", "delete")
KEY_NAME = "key"      # a document's rendered key, in the scope of its fields


@dataclass(frozen=True)
class SourcePlan:
    connector: str
    resource: str
    params: Mapping[str, Any]
    alias: str
    id: Expr
    version: Expr | None
    cursor: str | None


@dataclass(frozen=True)
class EnsurePlan:
    name: str
    when: Expr | None
    connector: str
    document: str
    params: Mapping[str, Any]
    key: Template
    fields: Fn


@dataclass(frozen=True)
class RoutePlan:
    name: str
    description: str
    when: Expr | None
    action: str
    connector: str | None
    document: str | None
    params: Mapping[str, Any]
    key: Template | None
    fields: Fn | None
    ensure: tuple[EnsurePlan, ...]
    each: Expr | None = None       # one document per element (e.g. per refund)
    each_as: str = "item"
    lets: tuple[tuple[str, Fn], ...] = ()   # named values per route (and element)


@dataclass(frozen=True)
class Document:
    """One document a record produces."""
    flow: str
    route: str
    connector: str
    document: str
    action: str
    key: str
    payload: dict[str, Any]
    params: Mapping[str, Any]
    source_id: str
    source_version: str | None
    ensure: tuple["Document", ...] = ()
    is_ensure: bool = False

    def as_output(self) -> dict[str, Any]:
        """The dry-run / test form."""
        out: dict[str, Any] = {"route": self.route, "target": f"{self.connector}/{self.document}",
                               "action": self.action, "key": self.key}
        if self.ensure:
            out["ensure"] = [e.as_output() for e in self.ensure]
        out["payload"] = self.payload
        return out


@dataclass
class RecordOutcome:
    source_id: str
    source_version: str | None
    lets: dict[str, Any]
    routes: list[str]
    documents: list[Document]


class Tracer:
    """What an evaluation reports when one is given (explain, the agreement tests); each
    method is a no-op here. Without a tracer (a run) nothing is reported or computed for it."""

    def let(self, name: str, value: Any) -> None:
        """A let's value."""

    def condition(self, route: RoutePlan, scope: Scope, value: Any, why: Part | None) -> None:
        """A route's condition (per ``each`` element): the scope it saw (its ``history`` is
        the live dict, which later routes change), its value and, for a ``when``, its parts."""

    def route_let(self, route: RoutePlan, name: str, value: Any) -> None:
        """A route's own let, computed for a document."""


@dataclass
class Trace(Tracer):
    """A tracer that keeps everything: lets, and per condition (route, value, scope with
    history as it stood then, parts)."""
    lets: dict[str, Any] = field(default_factory=dict)
    conditions: list[tuple[str, Any, Scope, Part | None]] = field(default_factory=list)
    route_lets: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)

    def let(self, name: str, value: Any) -> None:
        self.lets[name] = value

    def condition(self, route: RoutePlan, scope: Scope, value: Any, why: Part | None) -> None:
        seen = {**scope, "history": {k: dict(v) for k, v in scope["history"].items()}}
        self.conditions.append((route.name, value, seen, why))

    def route_let(self, route: RoutePlan, name: str, value: Any) -> None:
        self.route_lets.setdefault(route.name, []).append((name, value))


@dataclass
class Plan:
    name: str
    file: Path
    base_dir: Path
    timezone: str
    source: SourcePlan
    tables: dict[str, dict[str, Any]]
    lets: tuple[tuple[str, Fn], ...]
    routes: tuple[RoutePlan, ...]
    spec: LoadedSpec
    compiler: ExpressionCompiler
    # Every expression and template compiled, with its path in the spec (e.g. ("let", "paid")):
    # what each let reads, so that coverage evaluates only what the conditions need.
    compiled: tuple[tuple[tuple, Any], ...] = ()
    # Tables read from a connector when a run starts (their sample stands in until then).
    connector_lookups: tuple[ConnectorLookup, ...] = ()
    # What documents not yet final in the source's system will still move in its stock
    # (place → item → signed quantity), the same for every record of a run: ``pending_stock``.
    pending_stock: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def reads_pending_stock(self) -> bool:
        """Whether an expression of the flow reads ``pending_stock`` (a run then loads it)."""
        return any(PENDING_STOCK in compiled.names for _, compiled in self.compiled)

    def with_pending_stock(self, pending: Mapping[str, Mapping[str, Any]]) -> "Plan":
        """This plan as one run sees it: with the stock held in the source's system now."""
        return replace(self, pending_stock=pending)

    def target_connectors(self) -> list[str]:
        """The connectors the routes write to (documents and ensured prerequisites)."""
        names = {r.connector for r in self.routes if r.connector}
        names |= {e.connector for r in self.routes for e in r.ensure}
        return sorted(names)

    def record_id(self, record: Mapping[str, Any]) -> str:
        try:
            value = self.source.id(record) if isinstance(record, dict) else None
        except Exception as exc:
            raise _failed(exc, "source.id") from None
        if value is None or value == "":
            raise MappingError(f"the record has no {self.source.id.source!r} (its id); set "
                               f"source.id to the field that identifies a record")
        return str(value)

    def record_version(self, record: Mapping[str, Any]) -> str | None:
        if self.source.version is None:
            return None
        try:
            value = self.source.version(record)  # type: ignore[arg-type]
        except Exception as exc:
            raise _failed(exc, "source.version") from None
        return None if value is None else str(value)

    # -- the evaluation core: run, explain and coverage all go through these -------------
    def scope(self, record: Mapping[str, Any], history: Mapping[str, Mapping[str, Any]] | None = None,
              tenant: str = "default") -> Scope:
        """The scope a record's lets and routes see: lookup tables, the record under its alias,
        ``tenant``, ``history`` (a copy: routes that fire add to it) and ``pending_stock`` (the
        run's, shared by every record: read only)."""
        scope: Scope = dict(self.tables)
        scope[self.source.alias] = record
        scope["tenant"] = tenant
        scope["history"] = {k: dict(v) for k, v in (history or {}).items()}
        scope[PENDING_STOCK] = self.pending_stock
        return scope

    def let_value(self, name: str, fn: Fn, scope: Scope) -> Any:
        """One let's value in ``scope`` (MappingError naming the let when it fails)."""
        try:
            return fn(scope)
        except Exception as exc:
            raise _failed(exc, f"let {name}") from None

    def eval_lets(self, scope: Scope, tracer: "Tracer | None" = None) -> dict[str, Any]:
        """Every let in order, each added to ``scope`` for the next; their values."""
        values: dict[str, Any] = {}
        for name, fn in self.lets:
            scope[name] = values[name] = self.let_value(name, fn, scope)
            if tracer is not None:
                tracer.let(name, values[name])
        return values

    def route_scopes(self, route: RoutePlan, scope: Scope) -> Iterator[Scope]:
        """The scope once, or once per element (``as`` name, ``position``) for ``each``."""
        if route.each is None:
            yield scope
            return
        try:
            items = route.each(scope)
        except Exception as exc:
            raise _failed(exc, f"route {route.name}: each") from None
        if items is None:
            return
        if not isinstance(items, list):
            raise MappingError(f"{route.each.source!r} is not a list", f"route {route.name}: each")
        for position, item in enumerate(items, 1):
            inner = dict(scope)
            inner[route.each_as] = item
            inner["position"] = position
            yield inner

    def condition(self, route: RoutePlan, scope: Scope, tracer: "Tracer | None" = None) -> Any:
        """The value of the route's ``when`` in ``scope`` (True without one); a tracer gets
        it with the scope and, for a ``when``, the values of its parts."""
        when = route.when
        try:
            if tracer is None:
                return True if when is None else when(scope)
            why = None if when is None else when.traced(scope)
        except Exception as exc:
            raise _failed(exc, f"route {route.name}: when") from None
        value = True if why is None else why.value
        tracer.condition(route, scope, value, why)
        return value

    def firing(self, route: RoutePlan, scope: Scope, tracer: "Tracer | None" = None) -> Iterator[Scope]:
        """The scopes (one, or one per ``each`` element) in which the route fires. Lazy: the
        caller records each firing in history (``planned``) before the next is decided."""
        for route_scope in self.route_scopes(route, scope):
            if truthy(self.condition(route, route_scope, tracer)):
                yield route_scope

    @staticmethod
    def planned(route: RoutePlan, scope: Scope, key: str = "") -> None:
        """Record in the scope's history that ``route`` produced a document keyed ``key``."""
        hist = scope["history"]
        keys = (hist.get(route.name) or {}).get("keys") or []
        hist[route.name] = {"key": key, "state": "planned", "keys": keys + [key]}

    def route_lets(self, route: RoutePlan, scope: Scope, tracer: "Tracer | None" = None) -> Scope:
        """``scope`` with the route's own lets added (a new dict when there are any)."""
        if not route.lets:
            return scope
        scope = dict(scope)
        for name, fn in route.lets:
            try:
                scope[name] = fn(scope)
            except Exception as exc:
                raise _failed(exc, f"route {route.name}: let {name}") from None
            if tracer is not None:
                tracer.route_let(route, name, scope[name])
        return scope

    def document(self, route: RoutePlan, scope: Scope, source_id: str,
                 version: str | None) -> Document:
        """The document (with its ensured prerequisites) a firing route builds in ``scope``."""
        return self._document(route, self.route_lets(route, scope), source_id, version)

    def evaluate(self, record: Mapping[str, Any], history: Mapping[str, Mapping[str, Any]] | None = None,
                 tenant: str = "default", tracer: "Tracer | None" = None,
                 documents: bool = True, lets: Mapping[str, Any] | None = None) -> RecordOutcome:
        """Map one record: let values, then every route whose condition holds.

        ``history`` maps route name → {key, state} for documents this record already has;
        routes fired in this call are added to it (state ``planned``) for the routes below.
        ``tracer`` receives every let, condition and condition part (explain); with
        ``documents=False`` only the conditions are evaluated; ``lets`` reuses let values
        computed for the same record (when they read no history).
        Raises MappingError naming the route and field that failed.
        """
        source_id = self.record_id(record) if documents else "-"
        version = self.record_version(record) if documents else None
        scope = self.scope(record, history, tenant)
        if lets is not None:          # computed by an earlier call for the same record
            scope.update(lets)
            lets = dict(lets)
        else:
            lets = self.eval_lets(scope, tracer)
        fired: list[str] = []
        docs: list[Document] = []
        for route in self.routes:
            for route_scope in self.firing(route, scope, tracer):
                if route.name not in fired:
                    fired.append(route.name)
                if route.action == "skip":
                    continue
                key = ""
                if documents:
                    docs.append(self.document(route, route_scope, source_id, version))
                    key = docs[-1].key
                self.planned(route, scope, key)
        return RecordOutcome(source_id, version, lets, fired, docs)

    def _document(self, route: RoutePlan, scope: Scope, source_id: str,
                  version: str | None) -> Document:
        where = f"route {route.name}"
        assert route.key is not None and route.connector and route.document
        try:
            key = route.key(scope)
        except Exception as exc:
            raise _failed(exc, f"{where}: key {route.key.source!r}") from None
        payload = _complete(route.connector, DocumentDraft(
            route.document, route.action, key,
            _eval_fields(route.fields, _with_key(scope, key), f"{where}: fields"), route.name))
        ensured = []
        for ens in route.ensure:
            if ens.when is not None:
                try:
                    if not truthy(ens.when(scope)):
                        continue
                except Exception as exc:
                    raise _failed(exc, f"{where}: ensure {ens.name}: when") from None
            try:
                ens_key = ens.key(scope)
            except Exception as exc:
                raise _failed(exc, f"{where}: ensure {ens.name}: key") from None
            ens_payload = _complete(ens.connector, DocumentDraft(
                ens.document, "create", ens_key,
                _eval_fields(ens.fields, _with_key(scope, ens_key),
                             f"{where}: ensure {ens.name}: fields"),
                f"{route.name}.{ens.name}"))
            ensured.append(Document(self.name, f"{route.name}.{ens.name}", ens.connector,
                                    ens.document, "create", ens_key, ens_payload, ens.params,
                                    source_id, version, (), True))
        return Document(self.name, route.name, route.connector, route.document, route.action,
                        key, payload, route.params, source_id, version, tuple(ensured))


def _with_key(scope: Scope, key: str) -> Scope:
    """The scope of a document's fields: ``key`` is its rendered key (docs/factoring.md),
    unless the flow names something ``key`` itself."""
    return scope if KEY_NAME in scope else {**scope, KEY_NAME: key}


def _complete(connector: str, draft: DocumentDraft) -> dict[str, Any]:
    """The payload as ``connector`` completes it (its document mechanics, e.g. amounts in two
    currencies), so dry runs, tests and runs all see what is written."""
    cls = get_connector(connector)
    return cls.complete_payload(draft) if cls is not None else dict(draft.payload)


def _eval_fields(fn: Fn | None, scope: Scope, where: str) -> dict[str, Any]:
    if fn is None:
        return {}
    try:
        return fn(scope)
    except Exception as exc:
        raise _failed(exc, where, ".") from None


def _failed(exc: Exception, where: str, sep: str = "") -> MappingError:
    """Any exception raised while mapping a record, as a MappingError naming where (with the
    field path inside ``where`` when known: ``let goods[1].unit_price``)."""
    if isinstance(exc, MappingError):
        return exc
    if isinstance(exc, _FieldError):
        joint = "" if exc.path.startswith("[") and not sep else sep or "."
        return MappingError(exc.reason, f"{where}{joint}{exc.path}")
    return MappingError(failure_reason(exc), where)


class _FieldError(RecordError):
    """A failure inside a field, collecting its path on the way out."""

    def __init__(self, reason: str, path: str):
        super().__init__(reason)
        self.reason, self.path = reason, path


def _at(step: str | int, exc: Exception) -> _FieldError:
    label = f"[{step}]" if isinstance(step, int) else str(step)
    if isinstance(exc, _FieldError):
        sep = "" if exc.path.startswith("[") else "."
        return _FieldError(exc.reason, f"{label}{sep}{exc.path}")
    return _FieldError(failure_reason(exc), label)


# --------------------------------------------------------------------------- compiling
class _Compiler:
    """Turns a LoadedSpec into a Plan, collecting every problem it finds on the way."""

    def __init__(self, spec: LoadedSpec):
        self.spec = spec
        self.problems: list[Problem] = []
        self.data: dict[str, Any] = spec.data
        self.base_dir = spec.path.parent
        self.tables: dict[str, dict[str, Any]] = {}
        self.table_files: dict[str, str] = {}
        self.connector_lookups: list[ConnectorLookup] = []
        tz = self.data.get("timezone", DEFAULT_TIMEZONE)
        try:
            get_zone(tz)
        except ValueError:
            self.error(("timezone",), f"unknown time zone {tz!r}", "use an IANA name, e.g. Asia/Ho_Chi_Minh")
            tz = DEFAULT_TIMEZONE
        self.timezone = tz
        self.library = Library(FunctionContext(tz, self.tables, self.table_files))
        self.compiler = ExpressionCompiler(self.library)
        self.compiled: list[tuple[tuple, Expr | Template]] = []   # becomes Plan.compiled

    def error(self, path: tuple, message: str, hint: str = "", *, key: bool = False,
              offset: int | None = None, severity: str = ERROR) -> None:
        self.problems.append(self.spec.problem(path, message, hint, key=key, offset=offset,
                                               severity=severity))

    # -- expressions with name checks -----------------------------------------------
    def expr(self, path: tuple, source: Any, names: set[str]) -> Expr | None:
        if not isinstance(source, str):
            self.error(path, f"{path_text(path)} must be a JMESPath expression (text)")
            return None
        if source.startswith("="):
            self.error(path, f"{path_text(path)} is always an expression; remove the leading '='",
                       f"write {source[1:]!r}", offset=0)
            return None
        try:
            expr = self.compiler.expr(source)
        except CompileError as exc:
            self.error(path, exc.message, exc.hint, offset=exc.offset)
            return None
        self.compiled.append((path, expr))
        self.check_names(path, expr.names, names, "expression")
        return expr

    def template(self, path: tuple, source: Any, names: set[str], key: bool = False) -> Template | None:
        if not isinstance(source, str):
            self.error(path, f"{path_text(path)} must be a template (text)")
            return None
        try:
            tpl = self.compiler.template(source, key=key)
        except CompileError as exc:
            self.error(path, exc.message, exc.hint, offset=exc.offset)
            return None
        self.compiled.append((path, tpl))
        self.check_names(path, tpl.names, names, "template")
        return tpl

    def check_names(self, path: tuple, used: frozenset[str], known: set[str], kind: str) -> None:
        for name in sorted(used - known):
            guess = did_you_mean(name, known)
            hint = guess or f"names available here: {', '.join(sorted(known))}"
            self.error(path, f"{kind} uses unknown name {name!r}", hint)

    # -- field values -----------------------------------------------------------------
    def value(self, path: tuple, raw: Any, names: set[str], keep_decimals: bool = False) -> Fn | None:
        """Compile a field value. Payload values become JSON-ready (decimals as numbers);
        with ``keep_decimals`` (structured let values) they stay Decimal for later sums."""
        compiled = self.field(path, raw, names, keep_decimals)
        return None if compiled is None else compiled.fn

    def field(self, path: tuple, raw: Any, names: set[str], keep_decimals: bool = False) -> _Field | None:
        """``value``, with what a ``fields`` builder needs to skip the call in common cases."""
        if isinstance(raw, str):
            if raw.startswith("="):
                expr = self.expr_body(path, raw[1:], names)
                if expr is None:
                    return None
                keys = expr.keys if expr.keys is not None and len(expr.keys) <= 2 else None
                if keep_decimals:
                    return _Field(expr.fn, keys=keys)
                return _Field(_json_result(expr.fn), keys=keys, unconverted=expr.fn)
            if "<<" in raw or ">>" in raw:
                tpl = self.template(path, raw, names)
                return _Field(tpl.fn) if tpl is not None else None
            self.check_constant(path, raw, names)
            return _Field.of_constant(raw)
        if isinstance(raw, dict):
            if "each" in raw:
                fn = self.each(path, raw, names, keep_decimals)
                return _Field(fn) if fn is not None else None
            if set(raw) == {"const"}:
                return _Field.of_constant(raw["const"] if keep_decimals else jsonable(raw["const"]))
            fn = self.fields(path, raw, names, keep_decimals)
            return _Field(fn) if fn is not None else None
        if isinstance(raw, list):
            items = [self.value(path + (i,), v, names, keep_decimals) for i, v in enumerate(raw)]
            if any(i is None for i in items):
                return None
            fns = tuple(item for item in items if item is not None)

            def listing(scope: Scope) -> list[Any]:
                out = []
                for i, f in enumerate(fns):
                    try:
                        out.append(f(scope))
                    except Exception as exc:
                        raise _at(i, exc) from None
                return out
            return _Field(listing)
        return _Field.of_constant(raw if keep_decimals else jsonable(raw))

    def expr_body(self, path: tuple, body: str, names: set[str]) -> Expr | None:
        try:
            expr = self.compiler.expr(body)
        except CompileError as exc:
            offset = None if exc.offset is None else exc.offset + 1
            self.error(path, exc.message, exc.hint, offset=offset)
            return None
        self.compiled.append((path, expr))
        self.check_names(path, expr.names, names, "expression")
        return expr

    def check_constant(self, path: tuple, raw: str, names: set[str]) -> None:
        head = raw.split(".", 1)[0].split("[", 1)[0]
        if head in names and (raw == head or raw[len(head):len(head) + 1] in ".["):
            self.error(path, f"{raw!r} is a constant text here, but it looks like a path",
                       f"write '={raw}' for the value, or {{const: {raw!r}}} to keep the text",
                       severity=WARNING)

    def fields(self, path: tuple, raw: dict[str, Any], names: set[str],
               keep_decimals: bool = False) -> Fn | None:
        compiled = []
        ok = True
        for key, value in raw.items():
            compiled_field = self.field(path + (key,), value, names, keep_decimals)
            if compiled_field is None:
                ok = False
            else:
                compiled.append((key,) + compiled_field.step())
        if not ok:
            return None
        # This runs for every field of every document. Constants come with a copy of
        # `template`, which also sets the key order; the loop computes the other fields,
        # with _Field.step's cases inlined (most are names or two-step paths).
        template = {key: arg if kind == _CONSTANT else None for key, kind, arg, _ in compiled}
        items = tuple(item for item in compiled if item[1] != _CONSTANT)

        def build(scope: Scope) -> dict[str, Any]:
            out = template.copy()
            value: Any
            try:
                for key, kind, arg, to_json in items:
                    if kind == _NAME:
                        value = scope.get(arg)
                    elif kind == _PATH2:
                        try:
                            value = scope.get(arg[0]).get(arg[1])  # type: ignore[union-attr]
                        except AttributeError:
                            value = None
                    else:
                        value = arg(scope)
                    if to_json:
                        value_type = type(value)
                        if value_type is Decimal:
                            value = to_json_number(value)
                        elif value_type is dict or value_type is list:
                            value = jsonable(value)
                    out[key] = value
            except Exception as exc:     # any failure fails the record, naming the field
                raise _at(key, exc) from None
            return out
        return build

    def each(self, path: tuple, raw: dict[str, Any], names: set[str],
             keep_decimals: bool = False) -> Fn | None:
        allowed = ["each", "as", "when", "let", "fields"]
        unknown = set(raw) - set(allowed)
        for name in sorted(unknown):
            self.error(path + (name,), f"unknown key {name!r} in each",
                       did_you_mean(name, allowed) or "each takes: " + ", ".join(allowed), key=True)
        alias = raw.get("as", "item")
        if not isinstance(alias, str) or not alias.isidentifier():
            self.error(path + ("as",), "`as` must be a name, e.g. as: line")
            return None
        if "fields" not in raw or not isinstance(raw["fields"], dict):
            self.error(path, "each needs `fields:` (the object built per element)")
            return None
        items_expr = self.expr(path + ("each",), raw["each"], names)
        inner = names | {alias, "position"}
        when = self.expr(path + ("when",), raw["when"], inner - {"position"}) if "when" in raw else None
        lets, ok = self.lets(path + ("let",), raw.get("let") or {}, inner)
        inner = inner | {name for name, _ in lets}
        build = self.fields(path + ("fields",), raw["fields"], inner, keep_decimals)
        if items_expr is None or build is None or ("when" in raw and when is None) or unknown \
                or not ok:
            return None
        items_fn = items_expr.fn
        when_fn = when.fn if when is not None else None
        source = items_expr.source
        element_lets = tuple(lets)

        def each(scope: Scope) -> list[Any]:
            items = items_fn(scope)
            if items is None:
                return []
            if not isinstance(items, list):
                raise RecordError(f"each {source!r} is not a list (got {type(items).__name__})")
            out: list[Any] = []
            inner_scope = dict(scope)
            for i, item in enumerate(items):
                inner_scope[alias] = item
                try:
                    if when_fn is not None and not truthy(when_fn(inner_scope)):
                        continue
                    inner_scope["position"] = len(out) + 1
                    for name, fn in element_lets:
                        try:
                            inner_scope[name] = fn(inner_scope)
                        except Exception as exc:
                            raise _at(f"let {name}", exc) from None
                    out.append(build(inner_scope))
                except Exception as exc:
                    raise _at(i, exc) from None
            return out
        return each

    def lets(self, path: tuple, raw: dict[str, Any], names: set[str]) -> tuple[list[tuple[str, Fn]], bool]:
        """Named values in order: a JMESPath text, or a structured value (``each`` / a
        mapping) that keeps decimals exact for later sums."""
        out: list[tuple[str, Fn]] = []
        ok = True
        known = set(names)
        for name, src in raw.items():
            if name in known:
                self.error(path + (name,), f"let {name!r} reuses a name already defined",
                           "pick another name", key=True)
                ok = False
                continue
            if isinstance(src, (dict, list)):
                fn = self.value(path + (name,), src, known, keep_decimals=True)
            else:
                expr = self.expr(path + (name,), src, known)
                fn = expr.fn if expr is not None else None
            known.add(name)
            if fn is None:
                ok = False
            else:
                out.append((name, fn))
        return out, ok

    # -- the whole flow -----------------------------------------------------------------
    def compile(self) -> Plan | None:
        data = self.data
        source = self.source(data.get("source") or {})
        names: set[str] = set(RESERVED_NAMES)
        names.discard("position")
        if source is not None:
            names.add(source.alias)
        self.lookups(data.get("lookups") or {})
        names |= set(self.tables)
        lets, _ = self.lets(("let",), data.get("let") or {}, names)
        names |= set(data.get("let") or {})
        routes = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(data.get("routes") or []):
            name = raw.get("name", f"route{i}")
            if name in seen:
                self.error(("routes", i, "name"), f"route name {name!r} is used twice",
                           "route names must be unique in a flow")
            seen[name] = i
            route = self.route(("routes", i), raw, names)
            if route is not None:
                routes.append(route)
        if self.problems and any(p.severity == ERROR for p in self.problems) or source is None:
            return None
        return Plan(data["flow"], self.spec.path, self.base_dir, self.timezone, source,
                    self.tables, tuple(lets), tuple(routes), self.spec, self.compiler,
                    tuple(self.compiled), tuple(self.connector_lookups))

    def source(self, raw: dict[str, Any]) -> SourcePlan | None:
        connector = raw.get("connector")
        resource = raw.get("resource")
        catalogue = self.catalogue(("source", "connector"), connector)
        cursor = (raw.get("incremental") or {}).get("cursor")
        if catalogue is not None and resource is not None:
            info = catalogue.resources.get(resource)
            if info is None:
                known = sorted(catalogue.resources)
                self.error(("source", "resource"), f"connector {connector!r} has no resource {resource!r}",
                           did_you_mean(resource, known) or f"resources: {', '.join(known)}")
            elif cursor is not None and cursor not in info.incremental and "*" not in info.incremental:
                self.error(("source", "incremental", "cursor"),
                           f"resource {resource!r} cannot be read incrementally by {cursor!r}",
                           f"supported: {', '.join(info.incremental) or 'none (remove incremental)'}")
        alias = raw.get("as", "record")
        if alias in RESERVED_NAMES:
            self.error(("source", "as"), f"{alias!r} is a reserved name", "pick another, e.g. order")
        id_expr = self.record_expr(("source", "id"), raw.get("id", "id"))
        version_src = raw.get("version", cursor)
        version = self.record_expr(("source", "version"), version_src) if version_src else None
        if id_expr is None or not isinstance(connector, str) or not isinstance(resource, str):
            return None
        return SourcePlan(connector, resource, raw.get("params") or {}, alias, id_expr, version, cursor)

    def record_expr(self, path: tuple, source: Any) -> Expr | None:
        """An expression evaluated against the bare record (no name checks)."""
        try:
            return self.compiler.expr(source)
        except CompileError as exc:
            self.error(path, exc.message, exc.hint, offset=exc.offset)
            return None

    def catalogue(self, path: tuple, name: Any) -> Catalogue | None:
        if not isinstance(name, str):
            return None
        cls = get_connector(name)
        if cls is None:
            known = connector_names()
            self.error(path, f"unknown connector {name!r}",
                       did_you_mean(name, known) or f"installed connectors: {', '.join(known)}")
            return None
        return cls.catalogue

    def lookups(self, raw: dict[str, Any]) -> None:
        for name, spec in raw.items():
            if name in RESERVED_NAMES:
                self.error(("lookups", name), f"{name!r} is a reserved name", "rename the lookup", key=True)
                continue
            if isinstance(spec, dict) and "connector" in spec:
                self.connector_lookup(name, spec)
                continue
            file, key = (spec, None) if isinstance(spec, str) else (spec.get("file"), spec.get("key"))
            if not isinstance(file, str):
                continue
            display = str(Path(self.spec.display).parent / file)
            try:
                self.tables[name] = load_table(self.base_dir, file, display, key)
                self.table_files[name] = display
            except TableError as exc:
                where = ("lookups", name) if isinstance(spec, str) else ("lookups", name, "file")
                message = exc.message if exc.line <= 1 else f"{exc.message}"
                self.error(where, message, exc.hint)

    def connector_lookup(self, name: str, spec: dict[str, Any]) -> None:
        """A table read from a connector at the start of each run (docs/flows.md "Lookups");
        until then, and in validate and test, its ``sample`` file stands in for it."""
        path = ("lookups", name)
        catalogue = self.catalogue(path + ("connector",), spec.get("connector"))
        resource, key, sample = spec.get("resource"), spec.get("key"), spec.get("sample")
        if catalogue is not None and resource not in catalogue.resources:
            known = sorted(catalogue.resources)
            self.error(path + ("resource",), f"connector {spec['connector']!r} has no resource {resource!r}",
                       did_you_mean(str(resource), known) or f"resources: {', '.join(known)}")
        if not (isinstance(resource, str) and isinstance(key, str) and isinstance(sample, str)):
            return
        display = str(Path(self.spec.display).parent / sample)
        try:
            self.tables[name] = load_table(self.base_dir, sample, display, key)
            self.table_files[name] = f"{spec['connector']} {resource}"
        except TableError as exc:
            self.error(path + ("sample",), exc.message, exc.hint)
            return
        self.connector_lookups.append(ConnectorLookup(name, spec["connector"], resource, key))

    def route(self, path: tuple, raw: dict[str, Any], names: set[str]) -> RoutePlan | None:
        action = raw.get("action", "upsert")
        each = None
        each_as = raw.get("as", "item")
        if "each" in raw:
            each = self.expr(path + ("each",), raw["each"], names)
            names = names | {each_as, "position"}
        elif "as" in raw:
            self.error(path + ("as",), "`as` names the element of `each`; this route has no each",
                       "remove `as`, or add `each:` (the list to write one document per element)",
                       key=True)
        when = self.expr(path + ("when",), raw["when"], names) if "when" in raw else None
        route_lets, lets_ok = self.lets(path + ("let",), raw.get("let") or {}, names)
        names = names | {name for name, _ in route_lets}
        target = raw.get("target")
        if not lets_ok:
            return None
        if action == "skip":
            for extra in ("target", "key", "fields", "ensure"):
                if extra in raw:
                    self.error(path + (extra,), f"a skip route writes nothing; remove {extra!r}",
                               key=True)
            return RoutePlan(raw.get("name", ""), raw.get("description", ""), when, action,
                             None, None, {}, None, None, (), each, each_as, tuple(route_lets))
        if target is None:
            self.error(path, f"route {raw.get('name')!r} has no target",
                       "add target: {connector: ..., document: ...}, or action: skip")
            return None
        self.check_target(path + ("target",), target, action, raw.get("fields") or {})
        if "key" not in raw:
            self.error(path, f"route {raw.get('name')!r} has no key",
                       'add the document code template, e.g. key: "DH_<<order.id>>"')
            return None
        key = self.template(path + ("key",), raw["key"], names, key=True)
        if key is not None and "<<" not in key.source:
            self.error(path + ("key",), "the key is the same for every record",
                       'a key must name the record, e.g. key: "DH_<<order.id>>"')
        fields = self.fields(path + ("fields",), raw.get("fields") or {}, names | {KEY_NAME})
        ensures = []
        for j, ens in enumerate(raw.get("ensure") or []):
            epath = path + ("ensure", j)
            self.check_target(epath + ("target",), ens.get("target") or {}, "create", ens.get("fields") or {})
            ewhen = self.expr(epath + ("when",), ens["when"], names) if "when" in ens else None
            ekey = self.template(epath + ("key",), ens.get("key", ""), names, key=True)
            efields = self.fields(epath + ("fields",), ens.get("fields") or {}, names | {KEY_NAME})
            et = ens.get("target") or {}
            if ekey is not None and efields is not None:
                ensures.append(EnsurePlan(ens.get("name", f"ensure{j}"), ewhen, et["connector"],
                                          et["document"], et.get("params") or {}, ekey, efields))
        if key is None or fields is None:
            return None
        if "each" in raw and each is None:
            return None
        return RoutePlan(raw["name"], raw.get("description", ""), when, action,
                         target.get("connector"), target.get("document"),
                         target.get("params") or {}, key, fields, tuple(ensures), each, each_as,
                         tuple(route_lets))

    def check_target(self, path: tuple, target: dict[str, Any], action: str,
                     fields: dict[str, Any]) -> None:
        catalogue = self.catalogue(path + ("connector",), target.get("connector"))
        document = target.get("document")
        if catalogue is None or document is None:
            return
        info = catalogue.documents.get(document)
        if info is None:
            known = sorted(catalogue.documents)
            self.error(path + ("document",), f"connector {target['connector']!r} cannot write {document!r}",
                       did_you_mean(document, known) or f"documents: {', '.join(known)}")
            return
        if action not in info.actions:
            self.error(path, f"{target['connector']}/{document} does not support action {action!r}",
                       f"supported: {', '.join(info.actions)}")
        fields_path = path[:-1] + ("fields",)
        for name in fields:
            if name in info.forbidden_fields:
                self.error(fields_path + (name,), f"{target['connector']}/{document} cannot set "
                           f"{name!r}: {info.forbidden_fields[name]}", key=True)


def _constant(value: Any) -> Fn:
    def const(scope: Scope) -> Any:
        return value
    return const


def _json_result(fn: Fn) -> Fn:
    """``fn`` with decimals in its result as JSON numbers (a payload value)."""
    def evaluate(scope: Scope) -> Any:
        value = fn(scope)
        kind = type(value)
        if kind is Decimal:
            return to_json_number(value)
        if kind is dict or kind is list:
            return jsonable(value)
        return value
    return evaluate


# How a `fields` builder computes one field (see _Field.step).
_CONSTANT, _NAME, _PATH2, _CALL = 0, 1, 2, 3


@dataclass(frozen=True)
class _Field:
    """A compiled field value: ``fn(scope)`` computes it. The rest lets a ``fields`` builder
    skip the call for the common cases: a constant, or ``keys``, a name (``=customer_code``)
    or two-step path (``=line.amount``) read straight from the scope, which gives what the
    compiled field chain gives. ``unconverted``: ``fn`` before decimals become JSON numbers."""
    fn: Fn
    is_constant: bool = False
    constant: Any = None
    keys: tuple[str, ...] | None = None
    unconverted: Fn | None = None

    @classmethod
    def of_constant(cls, value: Any) -> "_Field":
        return cls(_constant(value), is_constant=True, constant=value)

    def step(self) -> tuple[int, Any, bool]:
        """(kind, argument, whether decimals in the result become JSON numbers)."""
        to_json = self.unconverted is not None
        if self.is_constant:
            return _CONSTANT, self.constant, False
        if self.keys is not None and len(self.keys) == 1:
            return _NAME, self.keys[0], to_json
        if self.keys is not None:
            return _PATH2, self.keys, to_json
        return _CALL, self.unconverted or self.fn, to_json


def compile_plan(spec: LoadedSpec) -> tuple[Plan | None, list[Problem]]:
    """Schema check, then compile. Returns (plan, problems); plan is None when any error."""
    if any(p.severity == ERROR for p in spec.problems):    # definitions, uses, includes
        return None, list(spec.problems)
    problems = list(spec.problems) + schema_problems(spec)
    if any(p.severity == ERROR for p in problems):
        return None, problems
    compiler = _Compiler(spec)
    plan = compiler.compile()
    return plan, problems + compiler.problems
