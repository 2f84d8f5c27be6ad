"""`hexaflow validate`: every problem names the file, line and column, what is wrong, and the fix.

One table, one case per message (docs/messages.md, "validate"). A case breaks the good flow
below in one way (or writes a file next to it) and names the position the problem must point
at, the words that name the culprit and the words that name the fix. Messages pinned by
tests/engine/test_validate_errors.py and test_coverage.py are not repeated here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from messages_kit import hexaflow

GOOD = """\
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
WHEN = "    when: \"order.status == 'open'\"\n"
FIELD = "      org_refno: \"<<order.id>>\"\n"
COVERAGE = "coverage:\n  vary: {order.status: [open]}\n"


@dataclass
class Case:
    id: str
    edits: list[tuple[str, str]]          # (old, new) applied once each to GOOD
    at: tuple[int, int]                   # line, col the problem points at
    names: tuple[str, ...]                # what is wrong / the culprit
    fix: tuple[str, ...]                  # words of the fix
    files: dict[str, str] = field(default_factory=dict)
    severity: str = "error"
    text: str | None = None               # the whole flow instead of edits


CASES = [
    # -- YAML and the schema ------------------------------------------------------------------
    Case("yaml-tab", [("  resource: records", "\tresource: records")], (4, 1),
         ("tab character",), ("check the indentation",)),
    Case("yaml-key-not-text", [("lookups:", "[1, 2]: x\nlookups:")], (7, 1),
         ("mapping keys must be plain text",), ("in quotes",)),
    Case("not-a-mapping", [], (1, 1), ("must be a YAML mapping",), ("start with `flow: <name>`",),
         text="- a\n- b\n"),
    Case("required-key", [], (1, 1), ("missing the required key 'routes'",), ("add `routes:`",),
         text="flow: orders\nsource: {connector: file, resource: records}\n"),
    Case("required-flow", [("flow: orders\n", "")], (1, 1), ("missing the required key 'flow'",),
         ("add `flow: <name>`",)),
    Case("pattern", [("flow: orders", "flow: Orders")], (1, 7), ("flow: 'Orders'",),
         ("lowercase identifier",)),
    Case("enum", [(WHEN, "    action: upsertt\n" + WHEN)], (11, 13),
         ("routes[0].action: 'upsertt'",), ("did you mean 'upsert'?",)),
    Case("type", [(WHEN, "    when: [1]\n")], (11, 11), ("routes[0].when must be a string",),
         ("JMESPath condition",)),
    # -- compiling: names, expressions, connectors ---------------------------------------------
    Case("time-zone", [("lookups:", "timezone: Asia/Hanoi\nlookups:")], (7, 11),
         ("unknown time zone 'Asia/Hanoi'",), ("IANA name", "Asia/Ho_Chi_Minh")),
    Case("empty-expression", [("order.status == 'open'", " ")], (11, 12),
         ("empty expression",), ("write a JMESPath expression",)),
    Case("number-literal", [("order.status == 'open'", "order.total > 5")], (11, 26),
         ("invalid JMESPath",), ("write `5` (in backticks)",)),
    Case("unknown-name", [("order.status == 'open'", "ordr.status == 'open'")], (11, 11),
         ("expression uses unknown name 'ordr'",), ("did you mean 'order'?",)),
    Case("constant-looks-like-path", [(FIELD, "      org_refno: order.id\n")], (15, 18),
         ("'order.id' is a constant text here",), ("write '=order.id'", "{const: 'order.id'}"),
         severity="warning"),
    Case("let-reuses-name", [("lookups:", "let:\n  order: \"order.id\"\nlookups:")], (8, 3),
         ("let 'order' reuses a name",), ("pick another name",)),
    Case("route-name-twice", [("      stock_code: \"=lookup('warehouses', order.location_id)\"\n",
                               "      stock_code: \"=lookup('warehouses', order.location_id)\"\n"
                               "  - name: sales_order\n    target: {connector: file, document: records}\n"
                               "    key: \"X_<<order.id>>\"\n")], (17, 11),
         ("route name 'sales_order' is used twice",), ("must be unique",)),
    Case("unknown-resource", [("resource: records", "resource: orders")], (4, 13),
         ("connector 'file' has no resource 'orders'",), ("did you mean 'records'?",)),
    Case("cursor-not-supported", [], (2, 70),
         ("resource 'orders' cannot be read incrementally by 'created_at'",),
         ("supported: updated_at",),
         text="flow: orders\nsource: {connector: haravan, resource: orders, incremental: {cursor: created_at}, as: order}\n"
              "routes:\n  - {name: a, target: {connector: file, document: records}, key: \"A_<<order.id>>\"}\n"),
    Case("reserved-alias", [("  as: order", "  as: history")], (6, 7),
         ("'history' is a reserved name",), ("pick another",)),
    Case("reserved-lookup", [("  warehouses: warehouses.yaml", "  tenant: warehouses.yaml\n  warehouses: warehouses.yaml")],
         (8, 3), ("'tenant' is a reserved name",), ("rename the lookup",)),
    Case("as-without-each", [(WHEN, "    as: line\n" + WHEN)], (11, 5),
         ("`as` names the element of `each`",), ("remove `as`", "add `each:`")),
    Case("skip-route-with-target", [(WHEN, "    action: skip\n" + WHEN)], (13, 5),
         ("a skip route writes nothing",), ("remove 'target'",)),
    Case("route-without-target", [("    target: {connector: file, document: records}\n", "")], (10, 5),
         ("route 'sales_order' has no target",), ("add target:", "action: skip")),
    Case("route-without-key", [("    key: \"DH_<<order.id>>\"\n", "")], (10, 5),
         ("route 'sales_order' has no key",), ('key: "DH_<<order.id>>"',)),
    Case("action-not-supported", [], (4, 39), ("haravan/product does not support action 'delete'",),
         ("supported: upsert, create",),
         text="flow: orders\nsource: {connector: file, resource: records, params: {path: o.jsonl}, as: order}\n"
              "routes:\n  - {name: a, action: delete, target: {connector: haravan, document: product}, key: \"A_<<order.id>>\"}\n"),
    Case("forbidden-field", [], (7, 14), ("misa/dictionary cannot set 'customer_group'",),
         ("assign the group by hand in AMIS",),
         text="flow: orders\nsource: {connector: file, resource: records, params: {path: o.jsonl}, as: order}\n"
              "routes:\n  - name: a\n    target: {connector: misa, document: dictionary}\n"
              "    key: \"A_<<order.id>>\"\n    fields: {customer_group: x}\n"),
    Case("ensure-unknown-document", [("    fields:\n", "    ensure:\n      - {name: c, target: {connector: file, document: recs}, "
                                      "key: \"K_<<order.id>>\", fields: {a: 1}}\n    fields:\n")], (15, 55),
         ("connector 'file' cannot write 'recs'",), ("did you mean 'records'?",)),
    # -- lookup tables: the flow's line, and the table's own file (and line) -------------------------
    Case("table-mapping-with-key", [("  warehouses: warehouses.yaml", "  warehouses: {file: warehouses.yaml, key: id}")],
         (8, 22), ("warehouses.yaml is a mapping",), ("remove `key:`",)),
    Case("table-list-without-key", [], (8, 15), ("warehouses.yaml is a list of rows",),
         ("{file: ..., key: <field>}",), files={"warehouses.yaml": "- {id: 1, code: A}\n"}),
    Case("table-row-without-key", [("  warehouses: warehouses.yaml", "  warehouses: {file: warehouses.yaml, key: id}")],
         (8, 22), ("row 2 of", "warehouses.yaml has no 'id'"), ("give every row the field 'id'",),
         files={"warehouses.yaml": "- {id: 1, code: A}\n- {code: B}\n"}),
    Case("table-duplicate-row", [("  warehouses: warehouses.yaml", "  warehouses: {file: warehouses.yaml, key: id}")],
         (8, 22), ("warehouses.yaml: duplicate key '1' (row 2)",), ("keep one row per key",),
         files={"warehouses.yaml": "- {id: 1, code: A}\n- {id: 1, code: B}\n"}),
    Case("table-not-rows", [], (8, 15), ("warehouses.yaml must hold a mapping or a list of rows",),
         ("write `key: value` lines",), files={"warehouses.yaml": "just text\n"}),
    Case("table-yaml-syntax", [], (8, 15), ("warehouses.yaml:2:1:", "did not find expected"),
         ("fix the table file at that line",), files={"warehouses.yaml": "a: [1\n"}),
    Case("table-duplicate-yaml-key", [], (8, 15), ("warehouses.yaml:2:1: duplicate key 'a'",),
         ("remove one of them",), files={"warehouses.yaml": "a: 1\na: 2\n"}),
    Case("csv-empty", [("warehouses.yaml", "staff.csv")], (8, 15), ("staff.csv is empty",),
         ("needs a header row",), files={"staff.csv": ""}),
    Case("csv-no-column", [("  warehouses: warehouses.yaml", "  warehouses: {file: staff.csv, key: user_id}")],
         (8, 22), ("staff.csv has no column 'user_id' (columns: id, code)",), ("set the lookup's `key:`",),
         files={"staff.csv": "id,code\n1,A\n"}),
    Case("csv-short-row", [("warehouses.yaml", "staff.csv")], (8, 15),
         ("staff.csv:3: the row does not have as many cells as the header",), ("as many cells",),
         files={"staff.csv": "id,code\n1,A\n2\n"}),
    Case("csv-duplicate-key", [("warehouses.yaml", "staff.csv")], (8, 15),
         ("staff.csv:3: duplicate key '1'",), ("keep one row per key",),
         files={"staff.csv": "id,code\n1,A\n1,B\n"}),
    # -- tests and coverage ----------------------------------------------------------------
    Case("test-file-missing", [("lookups:", "tests:\n  - {name: t, input: fixtures/missing.json}\nlookups:")],
         (8, 22), ("test file not found: fixtures/missing.json",), ("relative to the flow file",)),
    Case("coverage-base-not-json", [("lookups:", "coverage:\n  base: base.json\n  vary: {order.status: [open]}\nlookups:")],
         (8, 9), ("cannot read coverage base", "base.json:1:9: invalid JSON"), ("relative to the flow file",),
         files={"base.json": "{\"a\": 1,}"}),
    Case("coverage-path", [("lookups:", "coverage:\n  vary: {status: [open]}\nlookups:")], (8, 10),
         ("coverage path 'status' must start with the record's name 'order'",), ("e.g. order.financial_status",)),
    Case("coverage-history-route", [("lookups:", COVERAGE + "  history: [sale_order]\nlookups:")], (9, 12),
         ("coverage history names unknown route 'sale_order'",), ("routes of this flow: sales_order",)),
    Case("coverage-ignore", [("lookups:", COVERAGE + "  ignore: [\"order.status ==== 1\"]\nlookups:")], (9, 12),
         ("invalid condition: invalid JMESPath",), ("near '=='",)),
    Case("coverage-too-many", [("lookups:", "coverage:\n  vary:\n    order.a: [" + ", ".join(map(str, range(150)))
                                + "]\n    order.b: [" + ", ".join(map(str, range(150))) + "]\nlookups:")],
         (8, 3), ("coverage declares 22500 combinations (limit 20000)",), ("vary fewer fields",),
         severity="warning"),
    Case("coverage-more-unhandled", [("lookups:", "coverage:\n  vary: {order.status: [open, a, b, c, d, e, f, g, h, i, j]}\nlookups:")],
         (8, 3), ("... and 2 more unhandled combinations",), ()),
    Case("coverage-not-evaluated", [("lookups:", "let:\n  total: \"add(order.price, `1`)\"\n" + COVERAGE + "lookups:"),
                                    ("== 'open'\"", "== 'open' && total > `0`\"")],
         (10, 3), ("could not be evaluated", "let total: add: expected a number, got null"),
         ("give coverage a `base:` record",), severity="warning"),
    # -- keys that cannot tell two records apart (issue 12, finding 3) -------------------------
    Case("key-does-not-name-record", [('key: "DH_<<order.id>>"', 'key: "K_<<order.customer>>"')],
         (13, 10), ("route 'sales_order': the key does not name its record", "order.id"),
         ("<<order.id>>", "source.unique: [<field>]"), severity="warning"),
    Case("key-does-not-name-record-through-a-let",
         [("lookups:", "let:\n  code: \"join('', ['K', to_string(order.customer)])\"\nlookups:"),
          ('key: "DH_<<order.id>>"', 'key: "<<code>>"')],
         (15, 10), ("the key does not name its record",), ("source.unique",), severity="warning"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_validate_problem_names_the_place_and_the_fix(case: Case, tmp_path):
    text = GOOD if case.text is None else case.text
    for old, new in case.edits:
        assert old in text, f"{case.id}: the edit does not apply"
        text = text.replace(old, new, 1)
    (tmp_path / "flow.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "warehouses.yaml").write_text("'1': KHO_HCM\n", encoding="utf-8")
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "status": "open", "location_id": 1}\n')
    for name, content in case.files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    result = hexaflow(tmp_path, "validate", "flow.yaml")
    assert result.exit_code == (0 if case.severity == "warning" else 1), result.output
    problems = [line for line in result.stdout.splitlines() if line.startswith("flow.yaml:")]
    # the problem this case is about (a broken flow may give others after it)
    line = next((p for p in problems if f": {case.severity}: " in p and case.names[0] in p), None)
    assert line is not None, result.stdout
    assert line.startswith(f"flow.yaml:{case.at[0]}:{case.at[1]}: {case.severity}: "), line
    for words in case.names + case.fix:
        assert words in line, f"{words!r} not in {line!r}"


@pytest.mark.parametrize("args, first, fix", [
    (("nowhere/",), "nowhere/:1:1: error: no such file or folder", "give flow files or folders"),
    (("empty",), "empty:1:1: error: no flow files found", "`flow:`, `source:` and `routes:`"),
])
def test_paths_without_flows_name_the_path_and_what_a_flow_file_is(tmp_path, args, first, fix):
    (tmp_path / "empty").mkdir()
    result = hexaflow(tmp_path, "validate", *args)
    assert result.exit_code == 1
    assert result.stdout.startswith(first) and fix in result.stdout.splitlines()[0], result.stdout


def test_a_directory_named_like_a_flow_file_is_reported_not_a_crash(tmp_path):
    (tmp_path / "flows" / "odd.yaml").mkdir(parents=True)
    result = hexaflow(tmp_path, "validate", "flows")
    assert result.exit_code == 1, result.output
    assert "flows/odd.yaml:1:1: error: cannot read flow file" in result.stdout, result.stdout


def test_a_flow_file_that_is_not_utf8_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "flow.yaml").write_bytes(b"flow: orders\n# caf\xe9\n")
    for command in ("validate", "run"):
        result = hexaflow(tmp_path, command, "flow.yaml")
        assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None))), result.output
        line = result.output.splitlines()[0]
        assert line.startswith("flow.yaml:2:6: error: the flow file is not UTF-8 text"), result.output
        assert "save it as UTF-8" in line, line


@pytest.mark.parametrize("template, col, says", [
    ("DH_<<order.id | nofilter>>", 27, ("unknown template filter 'nofilter'", "filters here:",
                                         "lookup", "Jinja's filters")),
    ("DH_<<order.id | uper>>", 27, ("unknown template filter 'uper'", "did you mean 'upper'?")),
    ("DH_<< order.id is nonum >>", 29, ("unknown template test 'nonum'",)),
])
def test_an_unknown_template_filter_is_a_problem_not_a_crash(tmp_path, template, col, says):
    (tmp_path / "warehouses.yaml").write_text("'1': KHO_HCM\n")
    (tmp_path / "flow.yaml").write_text(GOOD.replace('"DH_<<order.id>>"', f'"{template}"'))
    result = hexaflow(tmp_path, "validate", "flow.yaml")
    assert result.exit_code == 1 and isinstance(result.exception, (SystemExit, type(None))), result.output
    line = result.stdout.splitlines()[0]
    assert line.startswith(f"flow.yaml:13:{col}: error: "), result.stdout
    for words in says:
        assert words in line, f"{words!r} not in {line!r}"
