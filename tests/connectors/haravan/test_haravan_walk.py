"""A walk by updated_at against a server that ignores the parameters it is sent.

Real Haravan silently ignores query parameters it does not know; a server (or a proxy) that
drops ``updated_at_min`` or ``order`` would serve old pages as new for ever. The sandbox's
``ignore_params`` switch (``POST /_sandbox/faults``) behaves like one, over real HTTP. Every read
here is bounded: it stops consuming after a few times the shop's orders or a few seconds, so a
walk that never ends fails the test instead of hanging it.
"""
from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from hexaflow.connector import ConnectorError
from hexaflow.connectors.sandbox_world import WAREHOUSES
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.state import open_store

ORDERS = 100
BOUND_S = 10.0
EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "orders-to-file"


def bounded_read(connector, since=None) -> tuple[list[dict], ConnectorError | None]:
    """The records one read yields (at most 5x the orders, for at most BOUND_S) and the error
    that ended it, if any."""
    records: list[dict] = []
    deadline = time.monotonic() + BOUND_S
    try:
        for page in connector.read("orders", {}, since=since):
            records.extend(page.records)
            if len(records) > 5 * ORDERS or time.monotonic() > deadline:
                pytest.fail(f"the walk did not end: {len(records)} records for {ORDERS} orders")
    except ConnectorError as exc:
        return records, exc
    return records, None


def ignore(shop, *params: str) -> None:
    answer = shop.admin("POST", "/faults", json={"ignore_params": list(params)})
    assert answer.status_code == 200, answer.text


def twice(records: list[dict]) -> list:
    return [key for key, n in Counter((r["id"], r["updated_at"]) for r in records).items() if n > 1]


def test_a_server_ignoring_updated_at_min_and_order_stops_the_read_with_a_clear_error(make_shop):
    shop = make_shop(orders=ORDERS)
    ignore(shop, "updated_at_min", "order")
    with shop.connector() as connector:
        records, error = bounded_read(connector)
    assert error is not None
    message = str(error)
    assert message.startswith("haravan: GET /orders.json: ")
    assert "the server ignores `order`" in message
    assert f"HARAVAN_BASE_URL ({shop.url})" in message
    assert "sorted_by_updated_at: false" in message
    assert shop.token not in message
    assert twice(records) == []
    # The switch was really on: the sandbox dropped what the connector sent.
    sent = [q for _m, p, q in shop.app.requests if p == "/com/orders.json"]
    assert sent and all(q["order"] == "updated_at asc" for q in sent)


def test_a_server_ignoring_updated_at_min_is_caught_before_a_record_is_emitted_twice(make_shop):
    shop = make_shop(orders=ORDERS)
    ignore(shop, "updated_at_min")
    with shop.connector() as connector:
        records, error = bounded_read(connector)
    assert error is not None and "the server ignores `updated_at_min`" in str(error)
    assert "sorted_by_updated_at" not in str(error)
    # The first page was in order and at the window start; the walk stopped on the next one.
    assert 0 < len(records) < ORDERS and twice(records) == []


def test_an_incremental_read_from_a_server_ignoring_updated_at_min_uses_nothing(make_shop):
    shop = make_shop(orders=ORDERS)
    with shop.connector(HARAVAN_OVERLAP_SECONDS="0") as connector:
        first, error = bounded_read(connector)
        assert error is None and len(first) == ORDERS
        cursor = max(r["updated_at"] for r in first)
        changed = first[0]["id"]
        assert shop.admin("POST", f"/orders/{changed}/fulfill").status_code == 200

        ignore(shop, "updated_at_min")
        records, error = bounded_read(connector, since=cursor)
        assert error is not None and "the server ignores `updated_at_min`" in str(error)
        assert records == []       # the old orders the server sent were not taken for changes

        ignore(shop)               # the switch off again: the same read finds the one change
        records, error = bounded_read(connector, since=cursor)
    assert error is None and [r["id"] for r in records] == [changed]


def test_a_run_against_such_a_server_stops_and_keeps_its_cursor(make_shop, tmp_path, monkeypatch):
    shop = make_shop(orders=ORDERS)
    text = (EXAMPLE / "flow.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^source:\n(?:  .*\n)+", "source:\n  connector: haravan\n"
                  "  resource: orders\n  as: order\n  incremental: {cursor: updated_at}\n",
                  text, count=1)
    (tmp_path / "flow.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "warehouses.yaml").write_text(
        "".join(f'"{w.location_id}": {w.stock_code}\n' for w in WAREHOUSES), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = {"HARAVAN_BASE_URL": shop.url, "HARAVAN_TOKEN": shop.token,
              "HARAVAN_BUCKET_AT_START": "empty", "HEXAFLOW_FILE_OUT": str(tmp_path / "out")}
    plan = load_plan(tmp_path / "flow.yaml")
    store = open_store(str(tmp_path / "state.db"))

    def run():
        connectors = Connectors("t1", plan.base_dir, config)
        try:
            # The limit bounds a walk that would never end.
            return run_flow(plan, tenant="t1", store=store, connectors=connectors,
                            limit=5 * ORDERS)
        finally:
            connectors.close()

    try:
        assert run().records == ORDERS
        cursor = store.get_cursor("t1", plan.name)
        ignore(shop, "updated_at_min", "order")
        started = time.monotonic()
        with pytest.raises(ConnectorError, match="the server ignores `"):
            run()
        assert time.monotonic() - started < BOUND_S
        assert store.get_cursor("t1", plan.name) == cursor
    finally:
        store.close()
