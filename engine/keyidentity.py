"""Does each route's document key name its record? (``validate`` warns when it cannot.)

A key is the document's identity in the ledger and the target. When it does not depend on the
record's id (``K_<<order.customer_id>>``), two records can render the same key: a run then refuses
the second one as a conflict (runner.decide), and this check says so before anything runs.

A key *names its record* when what it reads — through lets, route lets and the ``each`` list —
includes every field the source's ``id`` reads, or one of the fields declared in
``source.unique`` (a code unique in the source), or the whole record.
"""
from __future__ import annotations

from typing import Any

import jinja2.nodes as jn

from hexaflow.expressions import Expr, Template, simple_path
from hexaflow.jmespath_compiler import field_keys
from hexaflow.jmespath_private import compile_tree
from hexaflow.plan import Plan
from hexaflow.problems import WARNING, Problem
from hexaflow.spec import LoadedSpec

Read = tuple[str, ...]          # (name,) or (name, field): what an expression reads of the scope


def key_identity_problems(plan: Plan, spec: LoadedSpec) -> list[Problem]:
    alias = plan.source.alias
    id_fields = {read[0] for read in _expression_reads(plan.source.id.source)}
    unique = set((spec.data.get("source") or {}).get("unique") or [])
    problems = []
    for index, raw in enumerate(spec.data.get("routes") or []):
        if "key" not in raw or raw.get("action") == "skip":
            continue
        fields = _record_fields(plan, index, alias)
        if fields is None or id_fields <= fields or unique & fields:
            continue
        shown = ", ".join(f"{alias}.{f}" for f in sorted(id_fields))
        problems.append(spec.problem(
            ("routes", index, "key"),
            f"route {raw.get('name')!r}: the key does not name its record (it never reads "
            f"{shown}): two records can render the same key, and a run refuses the second",
            f"put the record's id in the key, e.g. <<{alias}.{sorted(id_fields)[0]}>>; or, if "
            f"a field the key reads is unique per record, declare it: source.unique: [<field>]",
            severity=WARNING))
    return problems


def _record_fields(plan: Plan, index: int, alias: str) -> set[str] | None:
    """The fields of the record that route ``index``'s key reads, however indirectly; None when
    it reads the whole record."""
    by_path = {path: compiled for path, compiled in plan.compiled}
    definitions = _definitions(plan, index)
    todo = list(_reads(plan, by_path.get(("routes", index, "key"))))
    seen: set[str] = set()
    fields: set[str] = set()
    while todo:
        read = todo.pop()
        name = read[0]
        if name == alias:
            if len(read) == 1:
                return None
            fields.add(read[1])
        elif name in definitions and name not in seen:
            seen.add(name)
            prefix = definitions[name]
            for path, compiled in plan.compiled:
                if path[:len(prefix)] == prefix:
                    todo.extend(_reads(plan, compiled))
    return fields


def _definitions(plan: Plan, index: int) -> dict[str, tuple]:
    """Name → the spec path under which its value is compiled, as route ``index`` sees names."""
    data = plan.spec.data
    out: dict[str, tuple] = {name: ("let", name) for name in data.get("let") or {}}
    route = (data.get("routes") or [])[index]
    if "each" in route:
        out[route.get("as", "item")] = ("routes", index, "each")
    for name in route.get("let") or {}:
        out[name] = ("routes", index, "let", name)
    return out


def _reads(plan: Plan, compiled: Expr | Template | None) -> set[Read]:
    if isinstance(compiled, Template):
        out: set[Read] = set()
        _walk_template(plan.compiler.jinja.parse(compiled.source), out)
        return out
    if isinstance(compiled, Expr):
        return _expression_reads(compiled.source)
    return set()


def _expression_reads(source: str) -> set[Read]:
    out: set[Read] = set()
    _walk_expression(compile_tree(source), out)
    return out


def _walk_expression(node: dict[str, Any], out: set[Read]) -> None:
    """Like expressions._root_names, keeping the field read after each name."""
    keys = field_keys(node)
    if keys is not None:
        out.add(tuple(keys[:2]))
        return
    kind, children = node["type"], node.get("children", [])
    if kind in ("subexpression", "index_expression", "projection", "value_projection",
                "filter_projection", "pipe"):
        _walk_expression(children[0], out)       # the rest reads the left side's result
        return
    for child in children:
        if isinstance(child, dict) and child.get("type") != "expref":
            _walk_expression(child, out)


def _walk_template(node: jn.Node, out: set[Read]) -> None:
    path = simple_path(node) if isinstance(node, jn.Expr) else None
    if path is not None:
        out.add(tuple(str(step) for step in path[:2]))
        return
    for child in node.iter_child_nodes():
        _walk_template(child, out)

