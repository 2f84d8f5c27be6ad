"""Route coverage (``coverage:`` in a flow): every declared combination of record values and
history, evaluated through the flow's conditions.

``check_coverage`` reports combinations no route handles, routes that would write the same
document twice, and routes that never fire. A flow such as the orders flow declares thousands
of (record, history) pairs, so ``CoverageEvaluator`` computes only what the conditions need,
each thing once (see its docstring).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from hexaflow.expressions import Expr, truthy
from hexaflow.jmespath_private import compile_tree
from hexaflow.paths import PathError, inside_project
from hexaflow.plan import MappingError, Plan
from hexaflow.problems import WARNING, Problem
from hexaflow.spec import LoadedSpec
from hexaflow.yamlload import SpecSyntaxError, read_data_file

MAX_COMBINATIONS = 20000
MAX_LISTED = 8


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
            base = read_data_file(inside_project(plan.base_dir, cov["base"], "coverage base"))
        except PathError as exc:
            return [spec.problem(("coverage", "base"), exc.message, exc.hint)]
        except SpecSyntaxError as exc:
            return [spec.problem(("coverage", "base"), f"cannot read coverage base {exc}",
                                 "the base is a JSON or YAML record; its path is relative to the flow file")]
    vary = cov.get("vary") or {}
    paths = []
    for dotted in vary:
        parts = str(dotted).split(".")
        if parts[0] != alias or len(parts) < 2:
            problems.append(spec.problem(("coverage", "vary", dotted),
                                         f"coverage path {dotted!r} must start with the record's "
                                         f"name {alias!r}",
                                         f"e.g. {alias}.financial_status", key=True))
        paths.append(parts[1:])
    route_names = [r.name for r in plan.routes]
    hist_routes = list(cov.get("history") or [])
    for name in hist_routes:
        if name not in route_names:
            problems.append(spec.problem(("coverage", "history"),
                                         f"coverage history names unknown route {name!r}",
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
    subsets: list[tuple[str, ...]] = [()]
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
                scope = combination.scope(subset)     # the core's scope, with the lets
                if not any(truthy(cond(scope)) for cond in ignore):
                    uncovered.append(label)
            writers = [r for r in fired if by_doc[r][0] is not None]
            for a, b in itertools.combinations(writers, 2):
                if by_doc[a] == by_doc[b]:
                    with_history = f" with history {list(subset)}" if subset else ""
                    overlaps.setdefault((a, b), f"both fire for {label}{with_history}")
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
        problems.append(spec.problem(where, f"... and {len(uncovered) - MAX_LISTED} more "
                                     f"unhandled combinations"))
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
        return _expr_reads(compile_tree(compiled.source))
    # A template: Jinja lists the names it reads, not their fields.
    return {name: ANY for name in compiled.names}


ACCEPTED = "accepted"


@dataclass
class _Needs:
    """What a let or a route depends on."""
    lets: frozenset          # let names read directly
    vary: tuple              # indices of the varied record fields read (directly or via lets)
    history: Any             # history entries read directly (ANY: any; a sorted tuple for routes)
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
            vary = set(needs.vary)
            let_history: Optional[frozenset] = frozenset()
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
        # Per route: the route, the history entries it reads, whether it reads lets that read
        # history, and its outcomes for this record's values of the varied fields it reads.
        self.steps = [(route, needs.history, needs.let_history is ANY or bool(needs.let_history),
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
        scope = plan.scope(self.record, {name: _history_entry(ACCEPTED) for name in seen})
        for name, fn, needs in self.ev.lets:
            key = (name, tuple(self.indices[i] for i in needs.vary), _within(seen, needs.history))
            if key in self.ev.let_values:
                value = self.ev.let_values[key]
            else:
                value = self.ev.let_values[key] = plan.let_value(name, fn, scope)
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
        tokens: dict[str, Any] = dict.fromkeys(subset, ACCEPTED)
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
        plan = self.ev.plan
        for _ in plan.firing(route, scope):       # the core decides; coverage only counts
            count += 1
            if route.action != "skip":     # what a later element's condition may read
                plan.planned(route, scope)
        return count
