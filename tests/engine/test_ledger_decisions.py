"""What the ledger decides: ensure once, withdraw only what exists, conflicts shown once."""
from __future__ import annotations

import json

import pytest

from hexaflow.ledger_rows import LedgerWrite, RowRef
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.state import open_store

FLOW = """
flow: orders
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
let:
  cancelled: "order.status == 'cancelled'"
routes:
  - name: sales_order
    when: "!cancelled"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    ensure:
      - name: customer
        target: {connector: file, document: records}
        key: "KH_<<order.customer>>"
        fields: {code: "KH_<<order.customer>>"}
    fields: {memo: "<<order.memo>>"}
  - name: withdraw_sales_order
    when: "cancelled && history.sales_order"
    action: delete
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
  - name: copy_of_sales_order
    when: "order.memo == 'copy'"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    fields: {memo: copy}
"""


class World:
    def __init__(self, tmp_path, write, monkeypatch):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("HEXAFLOW_FILE_OUT", str(tmp_path / "out"))
        self.tmp, self.write = tmp_path, write
        self.flow = write("flow.yaml", FLOW)
        self.store = open_store(str(tmp_path / "state.db"))

    def run(self, orders):
        self.write("orders.jsonl", "".join(json.dumps(o) + "\n" for o in orders))
        plan = load_plan(self.flow)
        lines = []
        summary = run_flow(plan, tenant="t", store=self.store,
                           connectors=Connectors("t", plan.base_dir), report=lines.append)
        return summary, lines

    def written(self):
        path = self.tmp / "out" / "records.jsonl"
        return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def test_a_customer_is_ensured_once_for_many_orders_and_runs(tmp_path, write, monkeypatch):
    world = World(tmp_path, write, monkeypatch)
    orders = [{"id": i, "status": "open", "customer": 7, "memo": f"m{i}"} for i in range(3)]
    world.run(orders)
    world.run(orders + [{"id": 9, "status": "open", "customer": 7, "memo": "m9"}])
    keys = [line["key"] for line in world.written()]
    assert keys.count("KH_7") == 1
    assert keys.index("KH_7") < keys.index("DH_0")
    assert sorted(k for k in keys if k.startswith("DH_")) == ["DH_0", "DH_1", "DH_2", "DH_9"]


def test_withdraw_only_what_was_written(tmp_path, write, monkeypatch):
    world = World(tmp_path, write, monkeypatch)
    # cancelled before it was ever synced: nothing to withdraw
    summary, _ = world.run([{"id": 1, "status": "cancelled", "customer": 1, "memo": "x"}])
    assert world.written() == []
    world.run([{"id": 2, "status": "open", "customer": 1, "memo": "x"}])
    summary, _ = world.run([{"id": 2, "status": "cancelled", "customer": 1, "memo": "x"}])
    deletes = [l for l in world.written() if l["action"] == "delete"]
    assert [d["key"] for d in deletes] == ["DH_2"]
    summary, _ = world.run([{"id": 2, "status": "cancelled", "customer": 1, "memo": "x"}])
    assert len([l for l in world.written() if l["action"] == "delete"]) == 1


def test_a_generated_document_cannot_be_withdrawn_and_the_conflict_is_shown_once(tmp_path, write, monkeypatch):
    world = World(tmp_path, write, monkeypatch)
    world.run([{"id": 3, "status": "open", "customer": 1, "memo": "x"}])
    entry = world.store.entry("t", "orders", "sales_order", "DH_3")
    world.store.apply_result("t", "file", entry.target_ref, "generated")
    summary, lines = world.run([{"id": 3, "status": "cancelled", "customer": 1, "memo": "x"}])
    assert summary.routes["withdraw_sales_order"]["conflict"] == 1
    assert any("already generated" in line and "by hand" in line for line in lines)
    summary, lines = world.run([{"id": 3, "status": "cancelled", "customer": 1, "memo": "x"}])
    assert summary.routes["withdraw_sales_order"]["conflict"] == 0
    assert not lines
    assert [l for l in world.written() if l["action"] == "delete"] == []


def test_a_change_after_generation_is_a_conflict_once_not_a_loop(tmp_path, write, monkeypatch):
    world = World(tmp_path, write, monkeypatch)
    world.run([{"id": 4, "status": "open", "customer": 1, "memo": "first"}])
    entry = world.store.entry("t", "orders", "sales_order", "DH_4")
    world.store.apply_result("t", "file", entry.target_ref, "generated")
    summary, lines = world.run([{"id": 4, "status": "open", "customer": 1, "memo": "second"}])
    assert summary.routes["sales_order"]["conflict"] == 1
    assert any("changed in the source after it was generated" in line for line in lines)
    summary, lines = world.run([{"id": 4, "status": "open", "customer": 1, "memo": "second"}])
    assert summary.routes["sales_order"]["conflict"] == 0 and summary.routes["sales_order"]["skipped"] == 1
    assert [l["payload"]["memo"] for l in world.written() if l["key"] == "DH_4"] == ["first"]


def test_a_second_route_writing_the_same_document_is_a_conflict(tmp_path, write, monkeypatch):
    world = World(tmp_path, write, monkeypatch)
    world.run([{"id": 5, "status": "open", "customer": 1, "memo": "a"}])
    summary, lines = world.run([{"id": 5, "status": "open", "customer": 1, "memo": "copy"}])
    assert summary.routes["copy_of_sales_order"]["conflict"] == 1
    assert any("already written by route sales_order" in line for line in lines)


def test_a_document_planned_by_a_crashed_run_is_sent_again_once(tmp_path, write, monkeypatch):
    world = World(tmp_path, write, monkeypatch)
    # a run that crashed after recording DH_6 as planned and before the send was confirmed;
    # by now the order is cancelled, so no route of the next run writes DH_6 again
    world.store.plan(LedgerWrite(RowRef("t", "orders", "sales_order", "DH_6"), "file", "records",
                                 "upsert", "6", None, {"memo": "crash"}, {}))
    summary, lines = world.run([{"id": 6, "status": "cancelled", "customer": 1, "memo": "x"}])
    assert any("sending again 1 document" in line for line in lines)
    assert world.store.entry("t", "orders", "sales_order", "DH_6").state == "done"
    summary, lines = world.run([{"id": 6, "status": "cancelled", "customer": 1, "memo": "x"}])
    sent = [(l["key"], l["action"]) for l in world.written() if l["key"] == "DH_6"]
    # sent once as planned; then, since it now exists and the order is cancelled, withdrawn once
    assert sent == [("DH_6", "upsert"), ("DH_6", "delete")]


# -- two records, one key (issue 12, finding 3) ---------------------------------------------
KEYED_BY_CUSTOMER = """
flow: orders
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
routes:
  - name: statement
    action: ACTION
    target: {connector: file, document: records}
    key: "K_<<order.customer>>"
    fields: {order: "=order.id", memo: "<<order.memo>>"}
"""


def keyed_world(tmp_path, write, monkeypatch, action):
    world = World(tmp_path, write, monkeypatch)
    world.flow = write("flow.yaml", KEYED_BY_CUSTOMER.replace("ACTION", action))
    return world


@pytest.mark.parametrize("action", ["create", "upsert"])
def test_a_key_owned_by_another_record_is_a_conflict_and_a_dead_letter(tmp_path, write,
                                                                         monkeypatch, action):
    world = keyed_world(tmp_path, write, monkeypatch, action)
    orders = [{"id": 1, "customer": 7, "memo": "first"}, {"id": 2, "customer": 7, "memo": "second"}]
    summary, lines = world.run(orders)
    assert summary.routes["statement"]["conflict"] == 1 and summary.failed
    assert any("order 2" in line or "record 2" in line for line in lines), lines
    assert any("already the document of record 1" in line for line in lines), lines
    letters = world.store.dead_letters("t", "orders")
    assert [(d["source_id"], d["route"], d["key"]) for d in letters] == [("2", "statement", "K_7")]
    # Later runs, with the second order changed: it never overwrites the first one's document,
    # and the ledger still credits the key to order 1 with order 1's payload.
    orders[1]["memo"] = "second, changed"
    for _ in range(2):
        summary, _ = world.run(orders)
        assert summary.routes["statement"]["conflict"] == 1
    assert [l["payload"] for l in world.written()] == [{"order": 1, "memo": "first"}]
    entry = world.store.entry("t", "orders", "statement", "K_7")
    assert entry.source_id == "1" and json.loads(entry.payload) == {"order": 1, "memo": "first"}
    assert len(world.store.dead_letters("t", "orders")) == 1


def test_the_owner_of_a_key_still_updates_it(tmp_path, write, monkeypatch):
    world = keyed_world(tmp_path, write, monkeypatch, "upsert")
    world.run([{"id": 1, "customer": 7, "memo": "first"}])
    world.run([{"id": 1, "customer": 7, "memo": "again"}])
    assert [l["payload"]["memo"] for l in world.written()] == ["first", "again"]
