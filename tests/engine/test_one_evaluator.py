"""One evaluation core: run (Plan.evaluate's documents), explain (the traced conditions) and
route coverage (CoverageEvaluator) agree on every case of the orders flow's tests and on every
coverage combination; explain.py and coverage.py import no evaluator of their own."""
from __future__ import annotations

import ast
from pathlib import Path

from hexaflow.coverage import CoverageEvaluator
from hexaflow.expressions import truthy
from hexaflow.flowtest import _history, _load
from hexaflow.plan import MappingError, Trace, compile_plan
from hexaflow.spec import load_spec

from test_coverage_evaluator import combinations

ROOT = Path(__file__).resolve().parents[2]


def _orders():
    spec = load_spec(ROOT / "mappings" / "orders.yaml")
    plan, _ = compile_plan(spec)
    assert plan is not None
    return plan, spec


def _traced_routes(plan, record, history):
    """explain's view: the routes whose traced condition held, in order."""
    trace = Trace()
    plan.evaluate(record, history, tracer=trace, documents=False)
    fired = []
    for name, value, _, _ in trace.conditions:
        if truthy(value) and name not in fired:
            fired.append(name)
    return fired


def test_run_and_explain_agree_on_every_orders_test_case():
    plan, spec = _orders()
    compared = 0
    for case in spec.data["tests"]:
        steps = case.get("steps") or [{"input": case.get("input")}]
        history = _history(case.get("history"))
        for step in steps:
            record = _load(plan.base_dir, step.get("input"))
            try:
                outcome = plan.evaluate(record, {k: dict(v) for k, v in history.items()})
            except MappingError:
                continue
            assert _traced_routes(plan, record, history) == outcome.routes, case.get("name")
            written = [d.route for d in outcome.documents]
            assert all(r in outcome.routes for r in written), case.get("name")
            for doc in outcome.documents:
                history[doc.route] = {"key": doc.key, "state": "accepted", "keys": [doc.key]}
            compared += 1
    assert compared > 5


def test_run_explain_and_coverage_agree_on_every_coverage_combination():
    plan, spec = _orders()
    fields, records, subsets = combinations(plan, spec)
    evaluator = CoverageEvaluator(plan, fields)
    fired = set()
    for indices, record in records:
        combination = evaluator.record(record, indices)
        for subset in subsets:
            history = {name: {"key": "", "state": "accepted"} for name in subset}
            try:
                run = plan.evaluate(record, history, documents=False).routes
            except MappingError:
                continue
            assert combination.routes(subset) == run, (indices, subset)
            assert _traced_routes(plan, record, history) == run, (indices, subset)
            fired.update(run)
    assert len(fired) > 3


def _imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / "engine" / f"{module}.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_explain_and_coverage_import_no_evaluator_of_their_own():
    for module in ("explain", "coverage", "keyidentity"):
        imported = _imports(module)
        assert not {n for n in imported if n.split(".")[0] in ("jmespath", "jinja2")
                    and module != "keyidentity"}, module
        assert not {n for n in imported if n.startswith("jmespath")}, module
