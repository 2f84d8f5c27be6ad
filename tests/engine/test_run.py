"""`hexaflow run`: writes each document once, reports bad records and goes on, dry-run writes nothing."""
from __future__ import annotations

import json

import pytest

FLOW = """
flow: orders
source:
  connector: file
  resource: records
  params: {path: orders.jsonl}
  as: order
  {incremental}
routes:
  - name: sales_order
    when: "order.status == 'open'"
    target: {connector: file, document: records, params: {path: out/docs.jsonl{accept}}}
    key: "DH_<<order.id>>"
    fields:
      org_refno: "<<order.id>>"
      memo: "Đơn <<order.name>>"
      total: "=money(order.total)"
"""

ORDERS = [
    {"id": 1, "name": "#1", "status": "open", "total": 100000.4, "updated_at": "2024-01-01T00:00:01Z"},
    {"id": 2, "name": "#2", "status": "open", "total": 250000, "updated_at": "2024-01-01T00:00:02Z"},
    {"id": 3, "name": "#3", "status": "closed", "total": 5, "updated_at": "2024-01-01T00:00:03Z"},
]


def make_flow(write, orders=ORDERS, incremental="", accept=""):
    write("orders.jsonl", "".join(json.dumps(o) + "\n" for o in orders))
    return write("flow.yaml", FLOW.replace("{incremental}", incremental).replace("{accept}", accept))


def written(tmp_path):
    path = tmp_path / "out" / "docs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_running_twice_writes_each_document_once(cli, write, tmp_path):
    make_flow(write)
    first = cli("run", "flow.yaml")
    assert first.exit_code == 0, first.output
    assert "written 2" in first.stdout
    second = cli("run", "flow.yaml")
    assert second.exit_code == 0, second.output
    assert "skipped 2" in second.stdout and "written" not in second.stdout
    docs = written(tmp_path)
    assert sorted(d["key"] for d in docs) == ["DH_1", "DH_2"]
    assert docs[0]["payload"] == {"org_refno": "1", "memo": "Đơn #1", "total": 100000}


def test_a_changed_record_is_written_again_and_an_unchanged_one_is_not(cli, write, tmp_path):
    make_flow(write)
    cli("run", "flow.yaml")
    changed = [dict(ORDERS[0], total=120000), ORDERS[1], ORDERS[2]]
    make_flow(write, changed)
    result = cli("run", "flow.yaml")
    assert "written 1, skipped 1" in result.stdout
    assert [d["key"] for d in written(tmp_path)] == ["DH_1", "DH_2", "DH_1"]


def test_incremental_cursor_reads_only_newer_records(cli, write, tmp_path):
    make_flow(write, incremental="incremental: {cursor: updated_at}")
    assert cli("run", "flow.yaml").exit_code == 0
    again = cli("run", "flow.yaml")
    assert "read 0 records" in again.stdout
    make_flow(write, ORDERS + [{"id": 4, "name": "#4", "status": "open", "total": 1,
                                "updated_at": "2024-01-02T00:00:00Z"}],
              incremental="incremental: {cursor: updated_at}")
    third = cli("run", "flow.yaml")
    assert "read 1 records" in third.stdout and "written 1" in third.stdout


def test_record_missing_its_key_field_is_reported_and_the_rest_are_written(cli, write, tmp_path):
    orders = [ORDERS[0], {"name": "#X", "status": "open", "total": 1, "ref": "x"}, ORDERS[1]]
    write("orders.jsonl", "".join(json.dumps(o) + "\n" for o in orders))
    write("flow.yaml", FLOW.replace("{incremental}", "id: ref || id").replace("{accept}", ""))
    result = cli("run", "flow.yaml")
    assert result.exit_code == 2, result.output
    assert "order x: route sales_order: key 'DH_<<order.id>>': order.id is undefined" in result.stderr
    assert sorted(d["key"] for d in written(tmp_path)) == ["DH_1", "DH_2"]


@pytest.mark.parametrize("bad_id", [None, ""])
def test_no_document_code_is_ever_rendered_from_an_empty_value(cli, write, tmp_path, bad_id):
    orders = [{"id": 9, "name": "#9", "status": "open", "total": 1}]
    write("orders.jsonl", "".join(json.dumps(o) + "\n" for o in orders))
    write("flow.yaml", FLOW.replace("{incremental}", "").replace("{accept}", "")
          .replace('"DH_<<order.id>>"', '"DH_<<order.code>>"').replace("  as: order", "  as: order")
          )
    orders[0]["code"] = bad_id
    write("orders.jsonl", json.dumps(orders[0]) + "\n")
    result = cli("run", "flow.yaml")
    assert result.exit_code == 2
    assert "order 9: route sales_order: key" in result.stderr
    assert written(tmp_path) == []


def test_dry_run_prints_exact_payloads_and_writes_nothing(cli, write, tmp_path):
    make_flow(write)
    result = cli("run", "flow.yaml", "--dry-run")
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert docs[0] == {"route": "sales_order", "target": "file/records", "action": "upsert",
                       "key": "DH_1", "payload": {"org_refno": "1", "memo": "Đơn #1", "total": 100000}}
    assert len(docs) == 2
    assert written(tmp_path) == []
    # and nothing was recorded: a real run still writes both
    assert "written 2" in cli("run", "flow.yaml").stdout


def test_limit_reads_at_most_n_records(cli, write):
    make_flow(write)
    result = cli("run", "flow.yaml", "--limit", "1")
    assert "read 1 records" in result.stdout and "(more left)" in result.stdout


def test_queued_writes_are_settled_by_polling(cli, write, tmp_path):
    from hexaflow.state import open_store
    make_flow(write, accept=", accept: queued")
    result = cli("run", "flow.yaml")
    assert "queued 2" in result.stdout
    store = open_store(str(tmp_path / "state.db"))
    states = sorted(e.state for e in store.entries("default", "orders"))
    assert states == ["accepted", "accepted"]


def test_a_flow_that_is_not_valid_exits_1_with_its_problems(cli, write):
    make_flow(write)
    write("bad.yaml", FLOW.replace("{incremental}", "").replace("{accept}", "").replace("when:", "wen:"))
    result = cli("run", "bad.yaml")
    assert result.exit_code == 1
    assert "unknown key 'wen'" in result.stderr


def test_flow_without_a_path_is_looked_up_in_mappings(cli, write, tmp_path):
    write("mappings/orders.jsonl", "".join(json.dumps(o) + "\n" for o in ORDERS))
    write("mappings/flow2.yaml", FLOW.replace("{incremental}", "").replace("{accept}", ""))
    result = cli("run", "flow2.yaml", "--dry-run")
    assert result.exit_code == 0, result.output


def test_second_concurrent_run_exits_with_a_clear_message(cli, write, tmp_path):
    from hexaflow.state import open_store
    make_flow(write)
    store = open_store(str(tmp_path / "state.db"))
    assert store.acquire_lock("default", "orders", owner="other-host:1") is not None
    result = cli("run", "flow.yaml")
    assert result.exit_code == 1
    assert "already running (other-host:1)" in result.stderr
    assert written(tmp_path) == []


def test_dead_letter_is_kept_then_replayed_once_after_the_mapping_is_fixed(cli, write, tmp_path):
    orders = [ORDERS[0], {"id": 5, "name": None, "status": "open", "total": 7}]
    write("orders.jsonl", "".join(json.dumps(o) + "\n" for o in orders))
    write("flow.yaml", FLOW.replace("{incremental}", "").replace("{accept}", ""))
    first = cli("run", "flow.yaml")
    assert first.exit_code == 2
    listing = cli("dlq", "list")
    assert "record 5" in listing.stdout and "order.name" in listing.stdout
    letter_id = listing.stdout.split()[0].lstrip("#")
    shown = cli("dlq", "show", letter_id)
    assert '"total": 7' in shown.stdout
    # fix the mapping: an order without a name uses its id
    write("flow.yaml", FLOW.replace("{incremental}", "").replace("{accept}", "")
          .replace('memo: "Đơn <<order.name>>"', 'memo: "Đơn <<order.name or order.id>>"'))
    replayed = cli("dlq", "replay", "flow.yaml")
    assert replayed.exit_code == 0, replayed.output
    assert "written 1" in replayed.stdout
    assert cli("dlq", "list").stdout == "no open dead letters\n"
    assert cli("dlq", "replay", "flow.yaml").stdout.count("written") == 0
    assert [d["key"] for d in written(tmp_path)] == ["DH_1", "DH_5"]
    status = cli("status")
    assert "orders: cursor -" in status.stdout and "2 done" in status.stdout
    trace = cli("trace", "5")
    assert "DH_5  flow orders  route sales_order" in trace.stdout and "done" in trace.stdout
