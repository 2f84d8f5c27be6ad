"""``hexaflow test``: run the ``tests:`` cases of flow files.

A case gives an input record (inline or a file next to the flow), optionally the routes whose
documents already exist (``history``), and what must come out: the routes that fire, the keys,
the exact payloads (or an error). ``steps`` runs the same record through several states, the
history carrying over, to check a lifecycle. ``pending_stock`` (on the case or a step) is what
documents not yet final hold in the source's stock, as a run reads it from the ledger.
Failures print a unified diff of the payloads.
"""
from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, TextIO

from hexaflow.expressions import jsonable
from hexaflow.paths import PathError, inside_project
from hexaflow.plan import MappingError, Plan, compile_plan
from hexaflow.problems import ERROR
from hexaflow.spec import load_spec
from hexaflow.validate import Report, find_flow_files
from hexaflow.yamlload import SpecSyntaxError, read_data_file


@dataclass
class CaseResult:
    flow: str
    name: str
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def _load(base: Path, value: Any) -> Any:
    """A test's input or payloads: inline, or the file it names (inside the flow's folder)."""
    if isinstance(value, str):
        try:
            path = inside_project(base, value, "test file")
        except PathError as exc:
            raise SpecSyntaxError(str(base / value), 1, 1, exc.message, exc.hint) from None
        return read_data_file(path, str(path))
    return value


def _history(raw: Any) -> dict[str, dict[str, Any]]:
    if not raw:
        return {}
    if isinstance(raw, list):
        return {name: {"key": "", "state": "accepted", "keys": []} for name in raw}
    return {name: {"key": "", "state": state, "keys": []} for name, state in raw.items()}


def _pretty(value: Any) -> list[str]:
    return json.dumps(jsonable(value), ensure_ascii=False, indent=2, sort_keys=True,
                      default=str).splitlines()


def _diff(expected: Any, actual: Any, label: str) -> str:
    lines = difflib.unified_diff(_pretty(expected), _pretty(actual), f"expected {label}",
                                 f"actual {label}", lineterm="", n=2)
    return "\n".join(lines)


def _same(expected: Any, actual: Any) -> bool:
    def dump(value: Any) -> str:
        return json.dumps(jsonable(value), sort_keys=True, ensure_ascii=False, default=str)
    return dump(expected) == dump(actual)


def run_case(plan: Plan, case: dict[str, Any]) -> list[str]:
    """The failures of one case (empty when it passes)."""
    base = plan.base_dir
    steps = case.get("steps") or [{"input": case.get("input"), "expect": case.get("expect")}]
    history = _history(case.get("history"))
    failures: list[str] = []
    for number, step in enumerate(steps, 1):
        where = f"step {number}: " if len(steps) > 1 else ""
        expect = step.get("expect") or {}
        try:
            record = _load(base, step.get("input"))
        except SpecSyntaxError as exc:
            return [f"{where}cannot read input: {exc}"]
        try:
            # What documents not yet final hold in the source's stock (the step's, else the case's).
            pending = step.get("pending_stock", case.get("pending_stock")) or {}
            outcome = plan.with_pending_stock(pending).evaluate(record, history)
        except MappingError as exc:
            if "error" in expect and expect["error"] in str(exc):
                continue
            failures.append(f"{where}the record failed to map: {exc}")
            continue
        if "error" in expect:
            failures.append(f"{where}expected an error containing {expect['error']!r}, "
                            f"but the record mapped (routes {outcome.routes})")
            continue
        # Expected payloads are named by route, or by document key when a route writes several.
        docs = {d.route: d for d in outcome.documents} | {d.key: d for d in outcome.documents if d.key}
        if "routes" in expect and list(expect["routes"]) != outcome.routes:
            failures.append(f"{where}routes: expected {list(expect['routes'])}, got {outcome.routes}")
        for route, key in (expect.get("keys") or {}).items():
            got = docs[route].key if route in docs else None
            if got != key:
                failures.append(f"{where}key of {route}: expected {key!r}, got {got!r}")
        try:
            payloads = _load(base, expect.get("payloads")) or {}
        except SpecSyntaxError as exc:
            return [f"{where}cannot read expected payloads: {exc}"]
        for route, expected in payloads.items():
            if route not in docs:
                failures.append(f"{where}expected a payload for {route}, but it wrote nothing")
            elif not _same(expected, docs[route].payload):
                failures.append(f"{where}payload of {route} differs:\n" +
                                _diff(expected, docs[route].payload, route))
        for route, by_name in (expect.get("ensure") or {}).items():
            ensured: dict[str, Any] = ({e.route.split(".", 1)[1]: e.payload for e in docs[route].ensure}
                                       if route in docs else {})
            for name, expected in by_name.items():
                if name not in ensured:
                    failures.append(f"{where}expected {route} to ensure {name}, but it did not")
                elif not _same(expected, ensured[name]):
                    failures.append(f"{where}ensure {name} of {route} differs:\n" +
                                    _diff(expected, ensured[name], f"{route}.{name}"))
        for doc in outcome.documents:
            keys = (history.get(doc.route) or {}).get("keys") or []
            history[doc.route] = {"key": doc.key, "state": "accepted", "keys": keys + [doc.key]}
    return failures


def run_tests(paths: Iterable[str], name_filter: str | None = None) -> tuple[list[CaseResult], list[str]]:
    """(case results, problems that stopped whole flows)."""
    report = Report()
    results: list[CaseResult] = []
    broken: list[str] = [p.text() for p in report.problems]
    for path in find_flow_files(paths, report):
        try:
            spec = load_spec(path)
        except SpecSyntaxError as exc:
            broken.append(str(exc))
            continue
        plan, problems = compile_plan(spec)
        if plan is None:
            broken.extend(p.text() for p in problems if p.severity == ERROR)
            continue
        for case in spec.data.get("tests") or []:
            if name_filter and name_filter not in case.get("name", ""):
                continue
            results.append(CaseResult(plan.name, case.get("name", "?"), run_case(plan, case)))
    broken.extend(p.text() for p in report.problems)
    return results, broken


def test_command(paths: Iterable[str], name_filter: str | None = None,
                 out: TextIO | None = None) -> int:
    out = out or sys.stdout
    results, broken = run_tests(paths, name_filter)
    for line in broken:
        print(line, file=out)
    for result in results:
        mark = "PASS" if result.passed else "FAIL"
        print(f"{mark} {result.flow}: {result.name}", file=out)
        for failure in result.failures:
            print("    " + failure.replace("\n", "\n    "), file=out)
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed or broken else 0
