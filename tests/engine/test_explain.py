"""``hexaflow explain``: conditions split into their parts, values, ledger decisions, payloads;
reading a record from a file or by id; and never writing anything."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jmespath
import pytest

from hexaflow.connector import Connector, ConnectorError, ConnectorContext, Page
from hexaflow.explain import split_condition
from hexaflow.registry import register_connector
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.state import open_store

FLOW = """
    flow: shop_orders
    source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order,
             incremental: {cursor: updated_at}}
    let:
      paid: "order.financial_status == 'paid'"
      fulfilled: "order.fulfillment_status == 'fulfilled'"
      cancelled: "order.cancelled_status == 'cancelled'"
    routes:
      - name: sales_order
        when: "!cancelled && !fulfilled"
        target: {connector: file, document: records, params: {path: out/orders.jsonl}}
        key: "DH_<<order.id>>"
        fields: {ref: "<<order.id>>", total: "=money(order.total_price)"}
      - name: receipt
        when: "paid && !cancelled && (!(history.receipt) || history.receipt.state == 'planned')"
        let:
          amount: "money(order.total_price)"
        target: {connector: file, document: records, params: {path: out/receipts.jsonl}}
        key: "PT_<<order.id>>"
        fields: {amount: "=amount"}
      - name: lines
        each: order.line_items
        as: line
        when: "line.quantity > `1`"
        target: {connector: file, document: records, params: {path: out/lines.jsonl}}
        key: "L_<<order.id>>_<<position>>"
        fields: {sku: "=line.sku"}
      - name: nothing_to_do
        when: "cancelled && !(history.sales_order)"
        action: skip
"""

ORDER = {"id": 7, "updated_at": "2024-06-10T03:00:00Z", "financial_status": "paid",
         "fulfillment_status": None, "cancelled_status": "uncancelled", "total_price": 880000,
         "line_items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]}


@pytest.fixture
def shop(write, tmp_path):
    flow = write("flow.yaml", FLOW)
    (tmp_path / "orders.jsonl").write_text(json.dumps(ORDER) + "\n", encoding="utf-8")
    (tmp_path / "order.json").write_text(json.dumps(ORDER), encoding="utf-8")
    return flow


def explain_json(cli, *args: str) -> dict:
    result = cli(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# -- splitting conditions -------------------------------------------------------------------
@pytest.mark.parametrize("source,shape", [
    ("!cancelled && !fulfilled", ("and", ["!cancelled", "!fulfilled"])),
    ("paid && !(history.receipt) && (!fulfilled || history.x)",
     ("and", ["paid && !(history.receipt)", "!fulfilled || history.x"])),
    ("a || b && c", ("or", ["a", "b && c"])),
    ("length(x[?k == `1` || k == `2`]) > `0` && y", ("and", ["length(x[?k == `1` || k == `2`]) > `0`", "y"])),
    ("f(!a, b) && c", ("and", ["f(!a, b)", "c"])),
])
def test_a_condition_splits_at_its_boolean_operators(source, shape):
    tree = split_condition(source)
    kind, parts = shape
    assert tree.kind == kind
    assert [c.text for c in tree.children] == parts
    for part in parts:            # every part is itself a valid expression
        jmespath.compile(part)


@pytest.mark.parametrize("source", ["!a == b", "(a || b).c", "a.b", "`true`", "!a.b"])
def test_a_condition_that_cannot_be_split_faithfully_stays_whole(source):
    tree = split_condition(source)
    assert tree.kind == "leaf" and tree.text == source


def test_the_parts_of_a_nested_condition_have_their_values(shop, cli):
    out = explain_json(cli, "explain", str(shop), "--record", "order.json")
    receipt = next(r for r in out["routes"] if r["route"] == "receipt")
    why = receipt["why"]
    assert receipt["fires"] is True and why["kind"] == "and"
    parts = {p["expr"]: p["value"] for p in _leaves(why)}
    assert parts == {"paid": True, "cancelled": False, "history.receipt": None,
                     "history.receipt.state == 'planned'": False}
    assert receipt["lets"] == {"amount": 880000}


def _leaves(node):
    if node["kind"] == "leaf":
        return [node]
    return [leaf for child in node["children"] for leaf in _leaves(child)]


# -- the whole explanation --------------------------------------------------------------------
def test_explain_shows_lets_routes_keys_decisions_and_payloads(shop, cli):
    out = explain_json(cli, "explain", str(shop), "--record", "order.json")
    assert out["record_id"] == "7" and out["alias"] == "order"
    assert out["lets"] == {"paid": True, "fulfilled": False, "cancelled": False}
    assert out["matched"] == ["sales_order", "receipt", "lines"]
    lines = [r for r in out["routes"] if r["route"] == "lines"]
    assert [(r["position"], r["fires"]) for r in lines] == [(1, True), (2, False)]
    docs = [(d["route"], d["key"], d["decision"], d["reason"]) for d in out["documents"]]
    assert docs == [("sales_order", "DH_7", "send", "new"), ("receipt", "PT_7", "send", "new"),
                    ("lines", "L_7_1", "send", "new")]
    assert out["documents"][0]["payload"] == {"ref": "7", "total": 880000}
    assert out["history"] == {} and out["error"] is None


def test_text_output_reads_top_to_bottom(shop, cli):
    result = cli("explain", str(shop), "--record", "order.json")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "shop_orders: order 7" in text
    assert "✓ sales_order" in text and "✗ nothing_to_do" in text
    assert "✓ !cancelled   (cancelled = false)" in text
    assert "decision: send (new)" in text
    assert '"total": 880000' in text
    assert text.index("\nlet\n") < text.index("\nroutes (") < text.index("\ndocuments (")


def test_history_and_decisions_come_from_the_ledger(shop, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(shop, tmp_path / "state.db")
    out = explain_json(cli, "explain", str(shop), "--record", "order.json")
    assert set(out["history"]) == {"sales_order", "receipt", "lines"}
    assert out["history"]["sales_order"]["key"] == "DH_7"
    decisions = {d["route"]: (d["decision"], d["reason"]) for d in out["documents"]}
    assert decisions["sales_order"] == ("skip", "already written")
    # receipt no longer fires: the ledger holds it (history.receipt is set, not planned)
    assert "receipt" not in out["matched"]

    changed = dict(ORDER, total_price=900000)
    (tmp_path / "changed.json").write_text(json.dumps(changed), encoding="utf-8")
    out = explain_json(cli, "explain", str(shop), "--record", "changed.json")
    decisions = {d["route"]: (d["decision"], d["reason"]) for d in out["documents"]}
    assert decisions["sales_order"] == ("send", "changed")


def _run(flow: Path, state: Path) -> None:
    plan = load_plan(flow)
    store = open_store(str(state))
    try:
        summary = run_flow(plan, tenant="default", store=store,
                           connectors=Connectors("default", plan.base_dir))
        assert summary.records == 1 and not summary.failed
    finally:
        store.close()


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_explain_writes_nothing_to_the_state_store_or_anywhere(shop, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(shop, tmp_path / "state.db")
    store = open_store(str(tmp_path / "state.db"))
    before_rows = ([e for e in store.entries("default")], store.get_cursor("default", "shop_orders"),
                   store.runs("default"), store.dead_letters("default"))
    store.close()
    before = _snapshot(tmp_path)
    for args in (("--record", "order.json"), ("--id", "7"), ("--record", "order.json", "--format", "json")):
        result = cli("explain", str(shop), *args)
        assert result.exit_code == 0, result.output
    (tmp_path / "broken.json").write_text(json.dumps({**ORDER, "total_price": "abc"}), encoding="utf-8")
    assert cli("explain", str(shop), "--record", "broken.json").exit_code == 2
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k != "broken.json"} == before
    store = open_store(str(tmp_path / "state.db"))
    after_rows = ([e for e in store.entries("default")], store.get_cursor("default", "shop_orders"),
                  store.runs("default"), store.dead_letters("default"))
    store.close()
    assert after_rows == before_rows


def test_explain_does_not_create_a_missing_state_store(shop, cli, tmp_path):
    missing = tmp_path / "nowhere" / "state.db"
    result = cli("explain", str(shop), "--record", "order.json", "--state", str(missing))
    assert result.exit_code == 0, result.output
    assert "does not exist yet" in result.output
    assert not missing.parent.exists()


# -- reading the record ---------------------------------------------------------------------
def test_id_fetches_the_record_from_the_source(shop, cli):
    out = explain_json(cli, "explain", str(shop), "--id", "7")
    assert out["record_id"] == "7" and out["matched"] == ["sales_order", "receipt", "lines"]
    result = cli("explain", str(shop), "--id", "999")
    assert result.exit_code == 1
    assert "has no records record with id 999" in result.output


@pytest.mark.parametrize("wrapped", [{"order": ORDER}, {"orders": [ORDER]}, [ORDER]])
def test_a_record_wrapped_as_an_api_returns_it_is_unwrapped(shop, cli, tmp_path, wrapped):
    (tmp_path / "wrapped.json").write_text(json.dumps(wrapped), encoding="utf-8")
    out = explain_json(cli, "explain", str(shop), "--record", "wrapped.json")
    assert out["record_id"] == "7"


def test_a_yaml_record_file_is_read(shop, cli, tmp_path):
    import yaml
    (tmp_path / "order.yaml").write_text(yaml.safe_dump(ORDER), encoding="utf-8")
    assert explain_json(cli, "explain", str(shop), "--record", "order.yaml")["record_id"] == "7"


def test_exactly_one_way_to_give_the_record(shop, cli):
    assert cli("explain", str(shop)).exit_code == 1
    assert cli("explain", str(shop), "--record", "order.json", "--id", "7").exit_code == 1


def test_a_record_that_fails_to_map_is_explained_up_to_the_failure(shop, cli, tmp_path):
    bad = {k: v for k, v in ORDER.items() if k != "total_price"}
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    result = cli("explain", str(shop), "--record", "bad.json")
    assert result.exit_code == 2
    assert "paid = true" in result.output            # the lets are still shown
    assert "✓ sales_order" in result.output           # and the conditions
    assert "error: route sales_order" in result.output
    out = json.loads(cli("explain", str(shop), "--record", "bad.json", "--format", "json").output)
    assert out["error"].startswith("route sales_order") and out["documents"] == []


class _WriteOnly(Connector):
    name = "write_only_for_explain"

    def read(self, resource, params, since=None, *, cursor_field=None):
        yield Page([])


def test_a_connector_that_cannot_fetch_one_record_says_so(write, cli):
    register_connector("write_only_for_explain", _WriteOnly)
    from hexaflow.connector import Catalogue, ResourceInfo
    _WriteOnly.catalogue = Catalogue(resources={"things": ResourceInfo("things")})
    flow = write("w.yaml", """
        flow: w
        source: {connector: write_only_for_explain, resource: things}
        routes:
          - {name: copy, target: {connector: file, document: records}, key: "R_<<record.id>>"}
    """)
    assert not _WriteOnly.can_read_one()
    with pytest.raises(ConnectorError, match="cannot fetch one record"):
        _WriteOnly(ConnectorContext()).read_one("things", "1")
    result = cli("explain", str(flow), "--id", "1")
    assert result.exit_code == 1
    assert "cannot fetch one record by its id" in result.output


def test_the_file_connector_reads_one_record(shop, tmp_path):
    from hexaflow.connectors.file import FileConnector
    assert FileConnector.can_read_one()
    reader = FileConnector(ConnectorContext(base_dir=str(tmp_path)))
    assert reader.read_one("records", "7", {"path": "orders.jsonl"})["total_price"] == 880000
    assert reader.read_one("records", "8", {"path": "orders.jsonl"}) is None
