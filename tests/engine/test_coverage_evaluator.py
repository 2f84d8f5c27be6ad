"""The coverage evaluator gives Plan.evaluate's routes for every (record, history) pair.

``hexaflow validate`` checks coverage with CoverageEvaluator, which computes only what the
routes' conditions need and each thing once; these tests compare it, pair by pair, with the
plain ``Plan.evaluate(record, history, documents=False)`` it stands for.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from hexaflow.plan import MappingError, compile_plan
from hexaflow.spec import load_spec
from hexaflow.coverage import CoverageEvaluator, _set_path
from hexaflow.yamlload import read_data_file

ROOT = Path(__file__).resolve().parents[2]


def combinations(plan, spec):
    """Every (indices, record) of the flow's coverage.vary, and every history subset."""
    cov = spec.data["coverage"]
    base = read_data_file(plan.base_dir / cov["base"]) if cov.get("base") else {}
    paths = [str(dotted).split(".")[1:] for dotted in cov["vary"]]
    value_lists = list(cov["vary"].values())
    history = list(cov.get("history") or [])
    subsets = [s for n in range(len(history) + 1) for s in itertools.combinations(history, n)]
    records = []
    for indices in itertools.product(*(range(len(v)) for v in value_lists)):
        record = dict(base)
        for parts, values, i in zip(paths, value_lists, indices):
            _set_path(record, parts, values[i])
        records.append((indices, record))
    return [parts[0] for parts in paths], records, subsets


def expected(plan, record, subset):
    history = {name: {"key": "", "state": "accepted"} for name in subset}
    try:
        outcome = plan.evaluate(record, history, documents=False)
    except MappingError as exc:
        return ("error", str(exc)), {}
    return outcome.routes, outcome.lets


def actual(combination, subset):
    try:
        return combination.routes(subset), combination.lets(subset)
    except MappingError as exc:
        return ("error", str(exc)), {}


def check(plan, spec):
    """Compare every pair; return the routes that fired somewhere (so a test can tell it
    compared something)."""
    fields, records, subsets = combinations(plan, spec)
    evaluator = CoverageEvaluator(plan, fields)
    fired = set()
    for indices, record in records:
        combination = evaluator.record(record, indices)
        for subset in subsets:
            want_routes, want_lets = expected(plan, record, subset)
            got_routes, got_lets = actual(combination, subset)
            assert got_routes == want_routes, (record, subset)
            # The lets it computes are those conditions read, with Plan.evaluate's values.
            assert {k: want_lets[k] for k in got_lets} == got_lets
            if isinstance(got_routes, list):
                fired.update(got_routes)
    return fired


def test_orders_flow_routes_match_plan_evaluate():
    spec = load_spec(ROOT / "mappings" / "orders.yaml")
    plan, problems = compile_plan(spec)
    assert plan is not None, problems
    assert check(plan, spec) == {route.name for route in plan.routes}


FLOW = """
flow: t
source: {connector: file, resource: records, params: {path: r.jsonl}, as: order}
let:
  paid: "order.status == 'paid'"
  unused: "order.missing.deep"
  seen_before: "length(keys(@.history)) > `0`"
  items: "order.items"
  written: "contains(history.per_item.keys || `[]`, '')"
routes:
  - name: first
    when: "!paid && !(history.first)"
    target: {connector: file, document: records}
    key: "A_<<order.id>>"
  - name: per_item
    each: "items"
    as: item
    when: "item.ok && (history.per_item.keys || `[]`) == `[]`"
    target: {connector: file, document: records}
    key: "B_<<order.id>>_<<position>>"
  - name: again
    when: "history.first.state == 'planned' || written"
    action: skip
  - name: whole_history
    when: "seen_before && paid"
    target: {connector: file, document: records}
    key: "C_<<order.id>>"
coverage:
  vary:
    order.status: [pending, paid]
    order.items: [[], [{ok: true}], [{ok: true}, {ok: false}, {ok: true}]]
  history: [first, per_item, whole_history]
"""


def test_history_read_every_way_matches_plan_evaluate(tmp_path):
    """History read whole (``@.history``), per entry, by a let, by an `each` route of its own
    entries, and a route's state: every pair still matches Plan.evaluate."""
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW, encoding="utf-8")
    spec = load_spec(path)
    plan, problems = compile_plan(spec)
    assert plan is not None, [p.text() for p in problems]
    assert check(plan, spec) == {"first", "per_item", "again", "whole_history"}
