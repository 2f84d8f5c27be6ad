"""Broken specs give one `file:line:col: error: message (hint: ...)` line each, and exit 1."""
from __future__ import annotations

import json

import pytest

GOOD = """
flow: orders
source:
  connector: file
  resource: records
  params: {path: orders.jsonl}
  as: order
lookups:
  warehouses: warehouses.yaml
routes:
  - name: sales_order
    when: "order.status == 'open'"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    fields:
      org_refno: "<<order.id>>"
      stock_code: "=lookup('warehouses', order.location_id)"
"""


@pytest.fixture
def flow_dir(write):
    write("warehouses.yaml", "'1': KHO_HCM\n")
    write("orders.jsonl", '{"id": 1, "status": "open", "location_id": 1}\n')
    return write


def check(cli, flow_dir, text, expected_line, expected_col, *fragments):
    path = flow_dir("flow.yaml", text)
    result = cli("validate", str(path))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert errors, result.stdout
    first = errors[0]
    assert first.startswith(f"{path}:{expected_line}:{expected_col}: error: "), first
    for fragment in fragments:
        assert fragment in first, first
    return first


def test_the_good_flow_is_valid(cli, flow_dir):
    path = flow_dir("flow.yaml", GOOD)
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.stdout


def test_unknown_key_names_allowed_keys(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("lookups:", "colour: red\nlookups:"), 7, 1,
          "unknown key 'colour'", "allowed here:")


def test_typo_in_a_field_name_suggests_the_right_one(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("    when:", "    wehn:"), 11, 5,
          "unknown key 'wehn' in routes[0]", "did you mean 'when'?")


def test_invalid_jmespath_points_at_the_character(cli, flow_dir):
    # the expression starts at column 12 inside quotes; the bad token is at offset 13
    line = check(cli, flow_dir, GOOD.replace("order.status == 'open'", "order.status === 'open'"),
                 11, 12 + 1 + 14, "invalid JMESPath")


def test_unclosed_template_delimiter(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace('"DH_<<order.id>>"', '"DH_<<order.id"'), 13, 10,
          "invalid template", "every '<<' needs a closing '>>'")


def test_template_using_an_undefined_name(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace('"<<order.id>>"', '"<<ordr.id>>"'), 15, 18,
          "unknown name 'ordr'", "did you mean 'order'?")


def test_unknown_connector(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("connector: file\n  resource", "connector: fiel\n  resource"),
          3, 14, "unknown connector 'fiel'", "did you mean 'file'?")


def test_missing_lookup_file(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("warehouses: warehouses.yaml", "warehouses: kho.yaml"),
          8, 15, "lookup file not found", "kho.yaml")


def test_wrong_indentation(cli, flow_dir):
    text = GOOD.replace("  resource: records", "    resource: records")
    check(cli, flow_dir, text, 4, 13, "indentation")


def test_indentation_that_still_parses_is_an_unknown_key(cli, flow_dir):
    # `fields` dedented to the flow level: valid YAML, wrong place
    text = GOOD.replace("    fields:\n      org_refno", "fields:\n      org_refno")
    first = check(cli, flow_dir, text, 14, 1, "unknown key 'fields' in (top level)")


def test_duplicate_keys_are_refused(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("  as: order", "  as: order\n  as: line"), 7, 3,
          "duplicate key 'as'")


def test_negated_path_is_refused_with_the_fix(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("order.status == 'open'", "!order.paid"), 11, 12,
          "always null", "!(order.paid)")


def test_expression_in_always_expression_field_must_not_start_with_equals(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("order.status == 'open'", "=order.open"), 11, 12,
          "remove the leading '='")


def test_unknown_function(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("lookup('warehouses'", "lokup('warehouses'"), 16, 21,
          "unknown function lokup()")


def test_unknown_document_kind(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace("document: records", "document: vouchers"), 12, 41,
          "cannot write 'vouchers'")


def test_key_without_any_value_is_refused(cli, flow_dir):
    check(cli, flow_dir, GOOD.replace('key: "DH_<<order.id>>"', 'key: "DH_"'), 13, 10,
          "the key is the same for every record")


def test_json_format_for_ci(cli, flow_dir):
    path = flow_dir("flow.yaml", GOOD.replace("    when:", "    wehn:"))
    result = cli("validate", "--format", "json", str(path))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["problems"][0]["line"] == 11
    assert "wehn" in report["problems"][0]["message"]


def test_folders_are_searched_for_flows_and_tables_are_not_flows(cli, flow_dir, tmp_path):
    # a table in a subfolder of the flow's folder is inside its project folder
    flow_dir("flows/a.yaml", GOOD.replace("warehouses.yaml", "tables/warehouses.yaml"))
    flow_dir("flows/tables/warehouses.yaml", "'1': KHO_HCM\n")
    flow_dir("flows/table.yaml", "KHO_HCM: 1\n")
    result = cli("validate", str(tmp_path / "flows"))
    assert result.exit_code == 0, result.output
    assert "1 flow(s) checked" in result.stdout


def test_missing_path_is_an_error(cli):
    result = cli("validate", "nowhere/")
    assert result.exit_code == 1
    assert "no such file or folder" in result.stdout


# -- a key that names its record raises no warning (issue 12, finding 3) ----------------------
@pytest.mark.parametrize("extra, key", [
    ("let:\n  code: \"join('', ['K', to_string(order.id)])\"\n", "<<code>>"),     # through a let
    ("", "K_<<order.customer>>_<<order.id>>"),
    ("", "K_<<order>>"),                                                         # the whole record
])
def test_a_key_that_reads_the_record_id_is_not_warned_about(tmp_path, extra, key):
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "flow: t\nsource: {connector: file, resource: records, params: {path: r.jsonl}, as: order}\n"
        + extra + "routes:\n  - name: r\n    target: {connector: file, document: records}\n"
        f"    key: \"{key}\"\n", encoding="utf-8")
    from hexaflow.validate import validate_paths
    report = validate_paths([str(flow)])
    assert [p.message for p in report.problems] == []


def test_source_unique_names_a_record_as_its_id_does(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "flow: t\nsource: {connector: file, resource: records, params: {path: r.jsonl}, as: item,\n"
        "  id: item_id, unique: [code]}\n"
        "routes:\n  - name: r\n    target: {connector: file, document: records}\n"
        "    key: \"SP_<<item.code>>\"\n", encoding="utf-8")
    from hexaflow.validate import validate_paths
    assert validate_paths([str(flow)]).problems == []
    flow.write_text(flow.read_text().replace(", unique: [code]", ""), encoding="utf-8")
    [problem] = validate_paths([str(flow)]).problems
    assert "item.item_id" in problem.message and problem.severity == "warning"
