"""``hexaflow validate``: every check a flow can get without touching a real system.

1. YAML well-formed (file:line:col of the syntax error, duplicate keys refused).
2. The flow JSON Schema (unknown keys with did-you-mean, missing keys, wrong types).
3. Compilation: every JMESPath expression and template, every name they use, connectors,
   resources, documents, actions, fields a target forbids, lookup files.
4. Test cases: their input and expectation files exist.
5. Route coverage, when the flow declares ``coverage:`` (see ``check_coverage``).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from hexaflow.expressions import Expr, truthy
from hexaflow.functions import RecordError
from hexaflow.plan import MappingError, Plan, compile_plan
from hexaflow.problems import ERROR, WARNING, Problem
from hexaflow.spec import LoadedSpec, is_flow, load_spec
from hexaflow.yamlload import SpecSyntaxError, read_data_file

MAX_COMBINATIONS = 20000
MAX_LISTED = 8


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def failed(self, strict: bool = False) -> bool:
        return bool(self.errors()) or (strict and bool(self.problems)) or not self.flows


def find_flow_files(paths: Iterable[str], report: Report) -> list[Path]:
    return [path for path, _ in find_flows(paths, report)]


def find_flows(paths: Iterable[str], report: Report) -> list[tuple[Path, LoadedSpec | None]]:
    """The flow files given or found in folders, each with its parsed spec when it had to be
    parsed to tell a flow from a table (so that no file is parsed twice)."""
    files: list[tuple[Path, LoadedSpec | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append((path, None))
        elif path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix.lower() not in (".yaml", ".yml") or \
                        any(part.startswith(".") for part in candidate.relative_to(path).parts):
                    continue
                try:
                    spec = load_spec(candidate)
                except SpecSyntaxError:
                    files.append((candidate, None))    # report its syntax error as a flow problem
                    continue
                if is_flow(spec.data):
                    files.append((candidate, spec))
        else:
            report.problems.append(Problem(raw, 1, 1, "no such file or folder",
                                           "give flow files or folders that hold them"))
    return files


def validate_paths(paths: Iterable[str]) -> Report:
    report = Report()
    for path, spec in find_flows(paths, report):
        report.flows.append(str(path))
        report.problems.extend(validate_file(path, spec))
    if not report.flows and not report.problems:
        report.problems.append(Problem(", ".join(paths), 1, 1, "no flow files found",
                                       "a flow file is YAML with `flow:`, `source:` and `routes:`"))
    return report


def validate_file(path: Path, spec: LoadedSpec | None = None) -> list[Problem]:
    """Every problem of one flow file; ``spec``: the file already parsed."""
    try:
        spec = spec or load_spec(path)
    except SpecSyntaxError as exc:
        return [Problem(exc.file, exc.line, exc.col, exc.message, exc.hint)]
    if not isinstance(spec.data, dict):
        return [Problem(str(path), 1, 1, "a flow file must be a YAML mapping",
                        "start with `flow: <name>`")]
    plan, problems = compile_plan(spec)
    if plan is None:
        return problems
    problems += check_test_files(spec)
    if "coverage" in spec.data:
        problems += check_coverage(plan, spec)
    return problems


def check_test_files(spec: LoadedSpec) -> list[Problem]:
    problems = []
    base = spec.path.parent
    for i, case in enumerate(spec.data.get("tests") or []):
        refs = [(("input",), case.get("input")), (("expect", "payloads"), (case.get("expect") or {}).get("payloads"))]
        for j, step in enumerate(case.get("steps") or []):
            refs.append((("steps", j, "input"), step.get("input")))
        for where, ref in refs:
            if isinstance(ref, str) and not (base / ref).exists():
                problems.append(spec.problem(("tests", i) + where, f"test file not found: {ref}",
                                             "paths are relative to the flow file"))
    return problems


# --------------------------------------------------------------------------- coverage
def _set_path(record: dict[str, Any], dotted: list[str], value: Any) -> None:
    """Set a value in a shallow copy of the base: the mappings on the way are copied, the rest
    is shared by every combination (evaluating a record never changes it)."""
    node = record
    for step in dotted[:-1]:
        child = node.get(step)
        node[step] = dict(child) if isinstance(child, dict) else {}
        node = node[step]
    node[dotted[-1]] = value


def check_coverage(plan: Plan, spec: LoadedSpec) -> list[Problem]:
    """Evaluate the conditions over every declared combination of values.

    - a combination seen for the first time (empty history) that no route handles → error;
    - two routes writing the same document (same target and key template) in one combination,
      or a route rewriting a document another route wrote earlier (per history) → error;
    - a route that fires in no combination → warning.
    """
    cov = spec.data["coverage"]
    problems: list[Problem] = []
    alias = plan.source.alias
    base: dict[str, Any] = {}
    if cov.get("base"):
        try:
            base = read_data_file(plan.base_dir / cov["base"])
        except SpecSyntaxError as exc:
            return [spec.problem(("coverage", "base"), f"cannot read coverage base {exc}",
                                 "the base is a JSON or YAML record; its path is relative to the flow file")]
    vary = cov.get("vary") or {}
    paths = []
    for dotted in vary:
        parts = str(dotted).split(".")
        if parts[0] != alias or len(parts) < 2:
            problems.append(spec.problem(("coverage", "vary", dotted),
                                         f"coverage path {dotted!r} must start with the record's name {alias!r}",
                                         f"e.g. {alias}.financial_status", key=True))
        paths.append(parts[1:])
    route_names = [r.name for r in plan.routes]
    hist_routes = list(cov.get("history") or [])
    for name in hist_routes:
        if name not in route_names:
            problems.append(spec.problem(("coverage", "history"), f"coverage history names unknown route {name!r}",
                                         f"routes of this flow: {', '.join(route_names)}"))
    ignore = []
    for i, src in enumerate(cov.get("ignore") or []):
        try:
            ignore.append(plan.compiler.expr(src))
        except Exception as exc:  # CompileError
            problems.append(spec.problem(("coverage", "ignore", i), f"invalid condition: {exc}"))
    if problems:
        return problems
    value_lists = list(vary.values())
    subsets = [()]
    for size in range(1, len(hist_routes) + 1):
        subsets += list(itertools.combinations(hist_routes, size))
    total = len(subsets)
    for values in value_lists:
        total *= len(values)
    if total > MAX_COMBINATIONS:
        return [spec.problem(("coverage",), f"coverage declares {total} combinations (limit "
                             f"{MAX_COMBINATIONS})", "vary fewer fields or fewer values",
                             severity=WARNING)]
    # Routes that write a document (a delete route targets one written by another on purpose).
    by_doc = {r.name: (r.connector if r.action != "delete" else None, r.document,
                       r.key.source if r.key else None) for r in plan.routes}
    evaluator = CoverageEvaluator(plan, [parts[0] for parts in paths], ignore)
    fired_ever: set[str] = set()
    uncovered: list[str] = []
    overlaps: dict[tuple[str, str], str] = {}
    eval_error = None
    for indices in itertools.product(*(range(len(values)) for values in value_lists)):
        values = [value_lists[i][j] for i, j in enumerate(indices)]
        record = dict(base) if isinstance(base, dict) else {}
        for parts, value in zip(paths, values):
            _set_path(record, parts, value)
        label = ", ".join(f"{d}={json.dumps(v, ensure_ascii=False, default=str)}"
                          for d, v in zip(vary, values))
        combination = evaluator.record(record, indices)
        for subset in subsets:
            try:
                fired = combination.routes(subset)
            except MappingError as exc:
                eval_error = eval_error or (label, str(exc))
                break
            fired_ever.update(fired)
            if not subset and not fired:
                scope = {alias: record, **combination.lets(subset), "history": {},
                         "tenant": "default", **plan.tables}
                if not any(truthy(cond(scope)) for cond in ignore):
                    uncovered.append(label)
            writers = [r for r in fired if by_doc[r][0] is not None]
            for a, b in itertools.combinations(writers, 2):
                if by_doc[a] == by_doc[b]:
                    overlaps.setdefault((a, b), f"both fire for {label}" + (f" with history {list(subset)}" if subset else ""))
            for earlier in subset:
                for r in writers:
                    if r != earlier and by_doc.get(earlier) == by_doc[r] and by_doc[r][0] is not None:
                        overlaps.setdefault((earlier, r), f"{r} fires for {label} after {earlier} "
                                            f"already wrote the same document")
    where = ("coverage",)
    for label in uncovered[:MAX_LISTED]:
        problems.append(spec.problem(where, f"no route handles {label} (first time the record is seen)",
                                     "add a route, a route with action: skip, or an `ignore` condition"))
    if len(uncovered) > MAX_LISTED:
        problems.append(spec.problem(where, f"... and {len(uncovered) - MAX_LISTED} more unhandled combinations"))
    for (a, b), why in overlaps.items():
        index = route_names.index(b)
        problems.append(spec.problem(("routes", index, "when"),
                                     f"routes {a!r} and {b!r} write the same document "
                                     f"{by_doc[b][2]!r}: {why}",
                                     "make their conditions exclusive (e.g. check history)"))
    for index, name in enumerate(route_names):
        if name not in fired_ever:
            problems.append(spec.problem(("routes", index, "when"),
                                         f"route {name!r} fires for none of the declared combinations",
                                         "check its condition, or add the values it needs to coverage.vary",
                                         severity=WARNING))
    if eval_error:
        problems.append(spec.problem(where, f"some combinations could not be evaluated "
                                     f"({eval_error[0]}): {eval_error[1]}",
                                     "give coverage a `base:` record with the fields the lets read",
                                     severity=WARNING))
    return problems


# What an expression reads from its scope: root name → the first-level fields it reads from
# that value (``order.customer.email`` reads {"order": {"customer"}}), ANY for a field set
# that cannot be told (the whole value is used), or ANY for the whole result when the scope
# itself is read (``@`` at the top). Fields of `history` are the routes whose entries are read.
ANY = None
Reads = Optional[dict]

# JMESPath nodes whose first child is evaluated against the scope and the others against it.
_LEFT_ONLY = ("subexpression", "index_expression", "projection", "value_projection",
              "filter_projection", "pipe", "flatten")
_ALL_CHILDREN = ("comparator", "and_expression", "or_expression", "not_expression",
                 "multi_select_list", "multi_select_dict", "key_val_pair", "function_expression")
_NO_READS = ("literal", "index", "slice", "expref", "raw_string")


def _merge(a: Reads, b: Reads) -> Reads:
    if a is ANY or b is ANY:
        return ANY
    out = dict(a)
    for name, fields in b.items():
        mine = out.get(name, frozenset())
        out[name] = ANY if mine is ANY or fields is ANY else mine | fields
    return out


def _leading_field(node: dict[str, Any]) -> str | None:
    """``a`` for ``a``, ``a.b``, ``a[0]``, ``a[*].b``: the name read first; else None."""
    if node["type"] == "field":
        return node["value"]
    if node["type"] in _LEFT_ONLY and node["children"]:
        return _leading_field(node["children"][0])
    return None


def _expr_reads(node: dict[str, Any]) -> Reads:
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        return {node["value"]: ANY}
    if kind in _LEFT_ONLY:
        first = children[0]
        if kind == "subexpression" and first["type"] == "field":
            field = _leading_field(children[1])
            return {first["value"]: ANY if field is None else frozenset([field])}
        return _expr_reads(first)
    if kind in _ALL_CHILDREN:
        reads: Reads = {}
        for child in children:
            reads = _merge(reads, _expr_reads(child))
        return reads
    if kind in _NO_READS:
        return {}
    return ANY          # `@` or an identity at the top: the whole scope (or a node unknown here)


def _reads(compiled: Any) -> Reads:
    if isinstance(compiled, Expr):
        import jmespath
        return _expr_reads(jmespath.compile(compiled.source).parsed)
    # A template: Jinja lists the names it reads, not their fields.
    return {name: ANY for name in compiled.names}


ACCEPTED = "accepted"


@dataclass
class _Needs:
    """What a let or a route depends on."""
    lets: frozenset          # let names read directly
    vary: tuple              # indices of the varied record fields read (directly or via lets)
    history: Optional[frozenset]   # history entries read directly (ANY: any)
    let_history: Optional[frozenset] = frozenset()   # ... and through the lets it reads


def _needs(reads: Reads, alias: str, vary_fields: list[str], let_names: Iterable[str]) -> _Needs:
    if reads is ANY:
        return _Needs(frozenset(let_names), tuple(range(len(vary_fields))), ANY)
    fields = reads.get(alias, frozenset())
    vary = tuple(i for i, name in enumerate(vary_fields)
                 if alias in reads and (fields is ANY or name in fields))
    return _Needs(frozenset(reads) & frozenset(let_names), vary, reads.get("history", frozenset()))


def _join(a: Optional[frozenset], b: Optional[frozenset]) -> Optional[frozenset]:
    return ANY if a is ANY or b is ANY else a | b


def _within(subset: Iterable[str], read: Optional[frozenset]) -> frozenset:
    """The part of a history subset that something reading ``read`` can see."""
    return frozenset(subset) if read is ANY else frozenset(n for n in subset if n in read)


class CoverageEvaluator:
    """What ``Plan.evaluate(record, history, documents=False)`` says about routes, for the many
    (record, history) pairs of a coverage check, computing each thing once:

    - only the lets that the routes' conditions, their ``each`` and the ``ignore`` conditions
      read, directly or through other lets (no payloads, no keys: coverage needs neither);
    - each let value once per combination of the varied fields and history entries it reads
      (most lets read few of the varied fields and no history);
    - each route's outcome once per combination of what it reads: varied fields, lets and
      history entries (history subsets differing only in entries a route does not read share
      its outcome).

    Varied fields are told apart by the index of their value in ``coverage.vary``; the rest of
    the record is the same ``base`` in every combination. History entries are kept as tokens
    (``accepted``, or ``("planned", n)`` for a route that fired n times in this evaluation) and
    become the dicts Plan.evaluate builds only when a condition is evaluated.
    tests/engine/test_coverage_evaluator.py checks the outcomes against Plan.evaluate.
    """

    def __init__(self, plan: Plan, vary_fields: list[str], ignore: Iterable[Expr] = ()):
        self.plan = plan
        alias = plan.source.alias
        let_names = [name for name, _ in plan.lets]
        parts: dict[str, Reads] = {name: {} for name in let_names}
        for path, compiled in plan.compiled:
            if len(path) > 1 and path[0] == "let" and path[1] in parts:
                parts[path[1]] = _merge(parts[path[1]], _reads(compiled))
        # Each let's needs, with those of the lets it reads (a let reads only earlier ones).
        let_needs: dict[str, _Needs] = {}
        for index, name in enumerate(let_names):
            needs = _needs(parts[name], alias, vary_fields, let_names[:index])
            vary, history = set(needs.vary), needs.history
            for other in needs.lets:
                vary |= set(let_needs[other].vary)
                history = _join(history, let_needs[other].history)
            let_needs[name] = _Needs(needs.lets, tuple(sorted(vary)), history)
        # Each route's needs (its condition and `each`; route lets only shape payloads).
        self.routes: list[_Needs] = []
        wanted: set[str] = set()
        for route in plan.routes:
            reads: Reads = {}
            for expr in (route.when, route.each):
                if expr is not None:
                    reads = _merge(reads, _reads(expr))
            needs = _needs(reads, alias, vary_fields, let_names)
            vary, let_history = set(needs.vary), frozenset()
            for other in needs.lets:
                vary |= set(let_needs[other].vary)
                let_history = _join(let_history, let_needs[other].history)
            history = ANY if needs.history is ANY else tuple(sorted(needs.history))
            self.routes.append(_Needs(needs.lets, tuple(sorted(vary)), history, let_history))
            wanted |= needs.lets
        for expr in ignore:
            wanted |= _needs(_reads(expr), alias, vary_fields, let_names).lets
        # The lets needed: those wanted, and what they read.
        needed: set[str] = set()
        for name in reversed(let_names):
            if name in wanted:
                needed.add(name)
                wanted |= let_needs[name].lets
        self.lets = [(name, fn, let_needs[name]) for name, fn in plan.lets if name in needed]
        self.let_history: Optional[frozenset] = frozenset()
        for _, _, needs in self.lets:
            self.let_history = _join(self.let_history, needs.history)
        self.let_values: dict[tuple, Any] = {}
        # (route index, varied values it reads) → {(history lets see, entries it reads) → how
        # many times the route fired}
        self.outcomes: dict[tuple, dict[Any, int]] = {}
        self.lets_seen: dict[tuple, frozenset] = {}    # history subset → the part lets read

    def record(self, record: dict[str, Any], indices: tuple[int, ...]) -> "_RecordCoverage":
        """``record``: the base with the varied fields set to the values at ``indices``."""
        return _RecordCoverage(self, record, indices)


def _history_entry(token: Any) -> dict[str, Any]:
    """The history entry Plan.evaluate holds for a token (see CoverageEvaluator)."""
    if token == ACCEPTED:
        return {"key": "", "state": ACCEPTED}
    return {"key": "", "state": "planned", "keys": [""] * token[1]}


class _RecordCoverage:
    """One combination of varied values: its lets and route outcomes."""

    def __init__(self, evaluator: CoverageEvaluator, record: dict[str, Any], indices: tuple[int, ...]):
        self.ev = evaluator
        self.record = record
        self.indices = indices
        # Per route: what its outcome depends on besides history and let values.
        # (its outcomes are kept per route and values of the varied fields it reads)
        self.steps = [(route, needs.history, bool(needs.let_history),
                       evaluator.outcomes.setdefault((index, tuple(indices[i] for i in needs.vary)), {}))
                      for index, (route, needs) in enumerate(zip(evaluator.plan.routes, evaluator.routes))]
        self.scopes: dict[frozenset, dict[str, Any]] = {}    # by history the lets see

    def scope(self, subset: Iterable[str]) -> dict[str, Any]:
        """The scope Plan.evaluate builds before its routes, with the needed lets."""
        seen = _within(subset, self.ev.let_history)
        scope = self.scopes.get(seen)
        if scope is not None:
            return scope
        plan = self.ev.plan
        scope = dict(plan.tables)
        scope[plan.source.alias] = self.record
        scope["tenant"] = "default"
        scope["history"] = {name: _history_entry(ACCEPTED) for name in seen}
        for name, fn, needs in self.ev.lets:
            key = (name, tuple(self.indices[i] for i in needs.vary), _within(seen, needs.history))
            if key in self.ev.let_values:
                value = self.ev.let_values[key]
            else:
                try:
                    value = fn(scope)
                except RecordError as exc:
                    raise MappingError(str(exc), f"let {name}") from None
                self.ev.let_values[key] = value
            scope[name] = value
        self.scopes[seen] = scope
        return scope

    def lets(self, subset: Iterable[str]) -> dict[str, Any]:
        scope = self.scope(subset)
        return {name: scope[name] for name, _, _ in self.ev.lets}

    def routes(self, subset: tuple[str, ...]) -> list[str]:
        """The routes that fire with ``subset`` in history (as accepted documents), in order:
        Plan.evaluate's ``routes``. Raises MappingError as Plan.evaluate would."""
        ev = self.ev
        lets_seen = ev.lets_seen.get(subset)
        if lets_seen is None:
            lets_seen = ev.lets_seen[subset] = _within(subset, ev.let_history)
        if lets_seen not in self.scopes:
            self.scope(subset)      # the lets first, as Plan.evaluate (and their errors)
        tokens = dict.fromkeys(subset, ACCEPTED)
        fired: list[str] = []
        for route, history, uses_lets, outcomes in self.steps:
            seen = frozenset(tokens.items()) if history is ANY else tuple(map(tokens.get, history))
            key = (lets_seen, seen) if uses_lets else seen
            count = outcomes.get(key)
            if count is None:
                count = outcomes[key] = self._route(route, subset, tokens)
            if count:
                fired.append(route.name)
                if route.action != "skip":
                    before = tokens.get(route.name)
                    done = 0 if before is None or before == ACCEPTED else before[1]
                    tokens[route.name] = ("planned", done + count)
        return fired

    def _route(self, route: Any, subset: tuple[str, ...], tokens: dict[str, Any]) -> int:
        """How many times ``route`` fires (once, or per element with ``each``)."""
        scope = dict(self.scope(subset))
        history = {name: _history_entry(token) for name, token in tokens.items()}
        scope["history"] = history
        count = 0
        for route_scope in self.ev.plan._route_scopes(route, scope):
            if route.when is not None:
                try:
                    cond = route.when(route_scope)
                except RecordError as exc:
                    raise MappingError(str(exc), f"route {route.name}: when") from None
                if not truthy(cond):
                    continue
            count += 1
            if route.action != "skip":     # what a later element's condition may read
                keys = (history.get(route.name) or {}).get("keys") or []
                history[route.name] = {"key": "", "state": "planned", "keys": keys + [""]}
        return count


# --------------------------------------------------------------------------- output
def render_report(report: Report, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps({"valid": not report.failed(), "flows": report.flows,
                           "problems": [p.as_dict() for p in report.problems]},
                          ensure_ascii=False, indent=2) + "\n"
    lines = [p.text() for p in report.problems]
    errors = len(report.errors())
    warnings = len(report.problems) - errors
    lines.append(f"{len(report.flows)} flow(s) checked: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines) + "\n"
