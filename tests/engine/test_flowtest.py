"""`hexaflow test`: cases pass, fail with a readable diff, and check lifecycles across steps."""
from __future__ import annotations

FLOW = """
flow: orders
source: {connector: file, resource: records, params: {path: o.jsonl}, as: order}
let:
  paid: "order.financial_status == 'paid'"
routes:
  - name: sales_order
    when: "!(history.sales_order)"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    fields: {total: "=money(order.total)", memo: "Đơn <<order.id>>"}
  - name: receipt
    when: "paid && !(history.receipt)"
    target: {connector: file, document: records}
    key: "PT_<<order.id>>"
    fields: {amount: "=money(order.total)"}
tests:
  - name: a new unpaid order becomes a sales order
    input: {id: 1, total: 10.4, financial_status: pending}
    expect:
      routes: [sales_order]
      keys: {sales_order: DH_1}
      payloads: {sales_order: {total: 10, memo: "Đơn 1"}}
  - name: paying later adds only the receipt
    steps:
      - input: {id: 2, total: 5, financial_status: pending}
        expect: {routes: [sales_order]}
      - input: {id: 2, total: 5, financial_status: paid}
        expect: {routes: [receipt], payloads: {receipt: {amount: 5}}}
  - name: history given directly
    history: [sales_order]
    input: {id: 3, total: 1, financial_status: paid}
    expect: {routes: [receipt]}
  - name: a record without id fails
    input: {total: 1}
    expect: {error: "has no 'id'"}
"""


def test_cases_pass(cli, write):
    write("flow.yaml", FLOW)
    result = cli("test", "flow.yaml")
    assert result.exit_code == 0, result.output
    assert "4 passed, 0 failed" in result.stdout


def test_a_failing_case_shows_a_diff_and_exits_1(cli, write):
    write("flow.yaml", FLOW.replace("{total: 10, memo:", "{total: 11, memo:"))
    result = cli("test", "flow.yaml")
    assert result.exit_code == 1
    assert "FAIL orders: a new unpaid order becomes a sales order" in result.stdout
    assert '-  "total": 11' in result.stdout and '+  "total": 10' in result.stdout
    assert "3 passed, 1 failed" in result.stdout


def test_wrong_routes_are_reported(cli, write):
    write("flow.yaml", FLOW.replace("expect: {routes: [receipt]}", "expect: {routes: [sales_order]}"))
    result = cli("test", "flow.yaml", "-k", "history given")
    assert result.exit_code == 1
    assert "routes: expected ['sales_order'], got ['receipt']" in result.stdout
