"""Mutated orders: real sandbox orders with keys missing, nulls, wrong types, huge and tiny
numbers and odd dates, as a shop's database may hold them after a bug, an import or an app.

``mutate(order, rng)`` changes one to three places of a copy of ``order``, chosen by ``rng`` (a
``random.Random``; hypothesis gives one with ``st.randoms()``), so the same seed gives the same
orders. ``json_safe`` keeps the values a JSON body can carry (no NaN or infinities).
"""
from __future__ import annotations

import copy
import random
from typing import Any

# Values that break naive code: each was seen to crash a mapping, or is a near relative.
HOSTILE: list[Any] = [
    None, "", "abc", "1e400", "-1e400", "1e-400", "NaN", "Infinity", 1e308, -1e308, 1e-300,
    10 ** 30, -(10 ** 30), 2 ** 63, -1, 0, 0.5, True, False, [], {}, ["x"], [None], {"a": 1},
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2024-02-30T25:61:00Z",
    "not a date", "x" * 5000, "Nguye\u0302\u0303n", " PAD-1 ", "\u0000",
]
NOT_JSON = [float("nan"), float("inf"), float("-inf")]
# Whole parts of an order whose absence or emptiness mattered before (line_items: a TypeError).
PARTS = ("line_items", "customer", "transactions", "fulfillments", "refunds", "shipping_lines",
         "shipping_address", "created_at", "total_price", "gateway", "location_id")


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every place inside ``value`` (dict keys and list indexes), depth first."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append(path + (key,))
            out.extend(_paths(item, path + (key,)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append(path + (index,))
            out.extend(_paths(item, path + (index,)))
    return out


def _parent(order: dict[str, Any], path: tuple) -> Any:
    node: Any = order
    for step in path[:-1]:
        node = node[step]
    return node


def mutate(order: dict[str, Any], rng: random.Random, json_safe: bool = True,
           keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """A mutated deep copy of ``order``; top-level keys in ``keep`` stay as they are."""
    out = copy.deepcopy(order)
    values = HOSTILE if json_safe else HOSTILE + NOT_JSON
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.25:
            part = rng.choice(PARTS)
            if part in keep:
                continue
            if rng.random() < 0.5:
                out.pop(part, None)
            else:
                out[part] = rng.choice(values)
            continue
        paths = [p for p in _paths(out) if p[0] not in keep]
        if not paths:
            continue
        path = rng.choice(paths)
        parent = _parent(out, path)
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(values))
    return out
