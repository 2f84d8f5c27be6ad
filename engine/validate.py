"""``hexaflow validate``: every check a flow can get without touching a real system.

1. YAML well-formed (file:line:col of the syntax error, duplicate keys refused).
2. The flow JSON Schema (unknown keys with did-you-mean, missing keys, wrong types).
3. Compilation: every JMESPath expression and template, every name they use, connectors,
   resources, documents, actions, fields a target forbids, lookup files.
4. Test cases: their input and expectation files exist.
5. Route coverage, when the flow declares ``coverage:`` (see ``check_coverage``).
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hexaflow.expressions import truthy
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
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix.lower() not in (".yaml", ".yml") or \
                        any(part.startswith(".") for part in candidate.parts):
                    continue
                try:
                    data = read_data_file(candidate)
                except SpecSyntaxError:
                    files.append(candidate)        # report its syntax error as a flow problem
                    continue
                if is_flow(data):
                    files.append(candidate)
        else:
            report.problems.append(Problem(raw, 1, 1, "no such file or folder",
                                           "give flow files or folders that hold them"))
    return files


def validate_paths(paths: Iterable[str]) -> Report:
    report = Report()
    for path in find_flow_files(paths, report):
        report.flows.append(str(path))
        report.problems.extend(validate_file(path))
    if not report.flows and not report.problems:
        report.problems.append(Problem(", ".join(paths), 1, 1, "no flow files found",
                                       "a flow file is YAML with `flow:`, `source:` and `routes:`"))
    return report


def validate_file(path: Path) -> list[Problem]:
    try:
        spec = load_spec(path)
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
    node = record
    for step in dotted[:-1]:
        if not isinstance(node.get(step), dict):
            node[step] = {}
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
            return [spec.problem(("coverage", "base"), f"cannot read coverage base: {exc.message}")]
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
            problems.append(spec.problem(("coverage", "history"), f"coverage history names unknown route {name!r}"))
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
    fired_ever: set[str] = set()
    uncovered: list[str] = []
    overlaps: dict[tuple[str, str], str] = {}
    eval_error = None
    for values in itertools.product(*value_lists):
        record = copy.deepcopy(base) if base else {}
        for parts, value in zip(paths, values):
            _set_path(record, parts, value)
        label = ", ".join(f"{d}={json.dumps(v, ensure_ascii=False, default=str)}"
                          for d, v in zip(vary, values))
        lets = None
        for subset in subsets:
            history = {name: {"key": "", "state": "accepted"} for name in subset}
            try:
                outcome = plan.evaluate(record, history, documents=False, lets=lets)
            except MappingError as exc:
                eval_error = eval_error or (label, str(exc))
                break
            if not plan.lets_read_history:
                lets = outcome.lets
            fired = outcome.routes
            fired_ever.update(fired)
            if not subset and not fired:
                scope = {alias: record, **outcome.lets, "history": {}, "tenant": "default", **plan.tables}
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
