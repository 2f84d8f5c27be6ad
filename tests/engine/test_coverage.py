"""Route coverage: unhandled combinations, overlapping routes, routes that never fire."""
from __future__ import annotations

BASE = """
flow: orders
source: {connector: file, resource: records, params: {path: o.jsonl}, as: order}
let:
  paid: "order.financial_status == 'paid'"
  fulfilled: "order.fulfillment_status == 'fulfilled'"
routes:
  - name: sales_order
    when: "!fulfilled && !(history.sales_order)"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
  - name: voucher_unpaid
    when: "fulfilled && !paid"
    target: {connector: file, document: records}
    key: "BH_<<order.id>>"
  - name: voucher_paid
    when: "fulfilled && paid"
    target: {connector: file, document: records}
    key: "BH_<<order.id>>"
coverage:
  vary:
    order.financial_status: [pending, paid]
    order.fulfillment_status: [null, fulfilled]
  history: [sales_order, voucher_unpaid]
"""


def validate(cli, write, text):
    path = write("flow.yaml", text)
    result = cli("validate", str(path))
    return result.exit_code, result.stdout


def test_rewrite_across_time_is_an_error(cli, write):
    code, out = validate(cli, write, BASE)
    assert code == 1
    assert "routes 'voucher_unpaid' and 'voucher_paid' write the same document 'BH_<<order.id>>'" in out
    assert "after voucher_unpaid already wrote the same document" in out


def test_exclusive_routes_are_valid(cli, write):
    code, out = validate(cli, write, BASE.replace("when: \"fulfilled && paid\"",
                                                  "when: \"fulfilled && paid && !(history.voucher_unpaid)\""))
    assert code == 0, out


def test_unhandled_combination_is_listed(cli, write):
    text = BASE.replace("when: \"fulfilled && paid\"", "when: \"fulfilled && paid && !(history.voucher_unpaid)\"") \
               .replace("[pending, paid]", "[pending, paid, voided]") \
               .replace('when: "fulfilled && !paid"', "when: \"fulfilled && order.financial_status == 'pending'\"")
    code, out = validate(cli, write, text)
    assert code == 1
    assert 'no route handles order.financial_status="voided", order.fulfillment_status="fulfilled"' in out


def test_ignore_and_skip_routes_cover_combinations(cli, write):
    text = BASE.replace("when: \"fulfilled && paid\"", "when: \"fulfilled && paid && !(history.voucher_unpaid)\"") \
               .replace("[pending, paid]", "[pending, paid, voided]") \
               .replace('when: "fulfilled && !paid"', "when: \"fulfilled && order.financial_status == 'pending'\"")
    ignored = text + "  ignore: [\"order.financial_status == 'voided'\"]\n"
    assert validate(cli, write, ignored)[0] == 0
    skipped = text.replace("coverage:", "  - name: voided\n    when: \"order.financial_status == 'voided'\"\n    action: skip\ncoverage:")
    assert validate(cli, write, skipped)[0] == 0


def test_a_route_that_never_fires_is_a_warning(cli, write):
    text = BASE.replace("when: \"fulfilled && paid\"", "when: \"fulfilled && paid && !paid\"")
    code, out = validate(cli, write, text)
    assert "warning: route 'voucher_paid' fires for none of the declared combinations" in out
