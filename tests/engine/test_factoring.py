"""Definitions, use, include and the document key in the fields' scope (docs/factoring.md);
the warning when a key template changes (hexaflow.keychanges)."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import jsonschema
import yaml
from click.testing import CliRunner

from hexaflow.cli import main
from hexaflow.keychanges import key_change_problems, key_change_warnings
from hexaflow.plan import compile_plan
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.spec import flow_schema, load_spec
from hexaflow.state import open_store

HEAD = """\
flow: f
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
let:
  code: "join('', ['KH', to_string(order.customer)])"
"""
ORDER = {"id": 7, "name": "#7", "customer": 5, "total": 30,
         "lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def compiled(path: Path):
    plan, problems = compile_plan(load_spec(path))
    assert plan is not None, [p.text() for p in problems]
    return plan


def problems_of(path: Path) -> list[str]:
    plan, problems = compile_plan(load_spec(path))
    assert plan is None
    return [p.text() for p in problems]


def documents(path: Path, record=ORDER) -> list[dict]:
    return [d.as_output() for d in compiled(path).evaluate(record).documents]


HAND_WRITTEN = HEAD + """\
routes:
  - name: sale
    target: {connector: file, document: records, params: {path: out/sales.jsonl}}
    key: "BH_<<order.id>>"
    ensure:
      - name: customer
        target: {connector: file, document: records, params: {path: out/customers.jsonl}}
        key: "<<code>>"
        fields: {code: "<<code>>"}
    fields:
      refno: "BH_<<order.id>>"
      customer: "=code"
      memo: "Bán hàng <<order.name>>"
      detail:
        each: order.lines
        as: line
        fields: {sku: "=line.sku", quantity: "=line.qty", stock: W1}
      total: "=order.total"
  - name: order
    target: {connector: file, document: records, params: {path: out/orders.jsonl}}
    key: "DH_<<order.id>>"
    fields:
      refno: "DH_<<order.id>>"
      customer: "=code"
      detail:
        each: order.lines
        as: line
        fields: {sku: "=line.sku", quantity: "=line.qty"}
"""

FACTORED = HEAD + """\
definitions:
  customer:
    name: customer
    target: {connector: file, document: records, params: {path: out/customers.jsonl}}
    key: "<<code>>"
    fields: {code: "=key"}
  line: {sku: "=line.sku", quantity: "=line.qty"}
  document:
    target: {connector: file, document: records}
    ensure: [{use: customer}]
    fields:
      refno: "=key"
      customer: "=code"
      memo: "Đơn hàng <<order.name>>"
      detail: {each: order.lines, as: line, fields: {use: line}}
routes:
  - name: sale
    use: document
    target: {params: {path: out/sales.jsonl}}
    key: "BH_<<order.id>>"
    fields:
      memo: "Bán hàng <<order.name>>"
      detail: {fields: {use: line, stock: W1}}
      total: "=order.total"
  - name: order
    use: document
    target: {params: {path: out/orders.jsonl}}
    key: "DH_<<order.id>>"
    ensure: null
    fields: {memo: null}
"""


def test_use_with_overrides_gives_the_documents_of_the_hand_written_routes(tmp_path):
    hand = documents(write(tmp_path, "hand.yaml", HAND_WRITTEN))
    factored = documents(write(tmp_path, "factored.yaml", FACTORED))
    assert factored == hand
    assert json.dumps(factored) == json.dumps(hand)        # the same key order too
    assert factored[0]["payload"]["refno"] == "BH_7" and factored[1]["payload"]["refno"] == "DH_7"
    assert factored[0]["ensure"][0]["payload"] == {"code": "KH5"}
    assert "memo" not in factored[1]["payload"] and "ensure" not in factored[1]


def test_the_flow_as_written_is_valid_under_the_schema_editors_use(tmp_path):
    data = yaml.safe_load(FACTORED)
    data["include"] = ["shared/x.yaml"]
    del data["routes"][1]["ensure"]      # a null override is for the engine, not the editor
    jsonschema.validate(data, flow_schema())
    del data["routes"][0]["use"]       # without use, a route must still be whole
    data["routes"][0].pop("name")
    try:
        jsonschema.validate(data, flow_schema())
    except jsonschema.ValidationError as exc:
        assert "'name' is a required property" in exc.message
    else:
        raise AssertionError("a route without use and without a name passed")


def test_include_shares_lets_and_definitions_between_flows(tmp_path):
    write(tmp_path, "shared/customer.yaml", """\
        include: [shared/names.yaml]
        let:
          code: "join('', ['KH', to_string(order.customer)])"
        definitions:
          customer:
            name: customer
            target: {connector: file, document: records, params: {path: out/c.jsonl}}
            key: "<<code>>"
            fields: {code: "=key", label: "=label"}
        """)
    write(tmp_path, "shared/names.yaml", """\
        let:
          label: "join(' ', ['Khách', order.name])"
        """)
    body = """\
        flow: {name}
        include: [shared/customer.yaml, shared/names.yaml]
        source: {{connector: file, resource: records, params: {{path: orders.jsonl}}, as: order}}
        let:
          twice: "join('-', [code, code])"
        routes:
          - name: sale
            target: {{connector: file, document: records, params: {{path: out/s.jsonl}}}}
            key: "BH_<<order.id>>"
            ensure: [{{use: customer}}]
            fields: {{who: "=twice"}}
        """
    for name in ("one", "two"):
        docs = documents(write(tmp_path, f"{name}.yaml", body.format(name=name)))
        assert docs[0]["payload"] == {"who": "KH5-KH5"}
        assert docs[0]["ensure"][0]["payload"] == {"code": "KH5", "label": "Khách #7"}
    plan = compiled(tmp_path / "one.yaml")
    assert [name for name, _ in plan.lets] == ["label", "code", "twice"]
    assert {p.name for p in load_spec(tmp_path / "one.yaml").included} == {"customer.yaml", "names.yaml"}


def test_an_error_in_an_included_definition_points_at_it_and_names_the_route(tmp_path):
    write(tmp_path, "shared/customer.yaml", """\
        definitions:
          customer:
            name: customer
            target: {connector: file, document: records, params: {path: out/c.jsonl}}
            key: "<<code>>"
            fields:
              code: "=key"
              name: "=custmer_name"
        """)
    write(tmp_path, "flow.yaml", HEAD + """\
        include: [shared/customer.yaml]
        routes:
          - name: sale
            target: {connector: file, document: records, params: {path: out/s.jsonl}}
            key: "BH_<<order.id>>"
            ensure:
              - use: customer
        """.replace("        ", ""))
    [problem] = problems_of(tmp_path / "flow.yaml")
    assert problem.startswith(f"{tmp_path}/flow.yaml:11:"), problem
    assert f"route sale (use: customer) → {tmp_path}/shared/customer.yaml:8:" in problem
    assert "custmer_name" in problem


def test_a_nested_use_shows_every_step(tmp_path):
    write(tmp_path, "flow.yaml", HEAD + """\
definitions:
  line: {sku: "=lin.sku"}
  document:
    fields:
      detail: {each: order.lines, as: line, fields: {use: line}}
routes:
  - name: sale
    use: document
    target: {connector: file, document: records, params: {path: out/s.jsonl}}
    key: "BH_<<order.id>>"
""")
    [problem] = problems_of(tmp_path / "flow.yaml")
    assert problem.startswith(f"{tmp_path}/flow.yaml:12:10: error: route sale (use: document) → "
                              f"{tmp_path}/flow.yaml:9:59 definition document (use: line) → "
                              f"{tmp_path}/flow.yaml:6:15: expression uses unknown name 'lin'"), problem
    assert "lin" in problem


def test_unknown_definition_cycle_and_wrong_type_are_errors_at_the_use(tmp_path):
    write(tmp_path, "flow.yaml", HEAD + """\
definitions:
  a: {use: b, x: 1}
  b: {use: a}
  lines: [1, 2]
  document: {key: "K<<order.id>>"}
routes:
  - {name: one, use: documnet}
  - {name: two, use: a}
  - {name: three, use: lines}
""")
    found = problems_of(tmp_path / "flow.yaml")
    text = "\n".join(found)
    assert "flow.yaml:11:22: error: unknown definition 'documnet' (hint: did you mean 'document'?)" in text
    assert "definitions use each other in a cycle: a → b → a" in text
    assert f"{tmp_path}/flow.yaml:12:" in text and "route two (use: a)" in text
    assert f"{tmp_path}/flow.yaml:13:" in text and "definition 'lines' is a list" in text


def test_include_refuses_escape_hidden_missing_and_cycles(tmp_path):
    project = tmp_path / "project"
    write(tmp_path, "outside.yaml", "let: {x: '`1`'}\n")
    write(project, ".env.yaml", "let: {y: '`1`'}\n")
    write(project, "a.yaml", "include: b.yaml\n")
    write(project, "b.yaml", "include: [a.yaml]\nsource: {}\n")
    write(project, "flow.yaml", HEAD + """\
include: [../outside.yaml, .env.yaml, nowhere.yaml, a.yaml]
routes:
  - {name: one, action: skip}
""")
    text = "\n".join(problems_of(project / "flow.yaml"))
    assert f"{project}/flow.yaml:5:11: error: included file '../outside.yaml' leads outside" in text
    assert f"{project}/flow.yaml:5:28: error: included file '.env.yaml' is a hidden file" in text
    assert f"{project}/flow.yaml:5:39: error: included file not found: nowhere.yaml" in text
    assert "files include each other in a cycle: a.yaml → b.yaml → a.yaml" in text
    assert f"{project}/b.yaml:2:1: unknown key 'source' in an included file" in text


def test_a_null_override_removes_and_lists_are_replaced(tmp_path):
    write(tmp_path, "flow.yaml", HEAD + """\
definitions:
  document:
    target: {connector: file, document: records, params: {path: out/s.jsonl}}
    fields: {a: 1, b: 2, tags: [x, y], nested: {p: 1, q: 2}}
routes:
  - name: sale
    use: document
    key: "BH_<<order.id>>"
    fields: {b: null, tags: [z], nested: {q: null, r: 3}, c: {const: null}}
""")
    [doc] = documents(tmp_path / "flow.yaml")
    assert doc["payload"] == {"a": 1, "tags": ["z"], "nested": {"p": 1, "r": 3}, "c": None}


def test_the_key_is_in_the_scope_of_the_fields_unless_the_flow_names_key(tmp_path):
    write(tmp_path, "flow.yaml", HEAD + """\
  key: "'mine'"
routes:
  - name: sale
    target: {connector: file, document: records, params: {path: out/s.jsonl}}
    key: "BH_<<order.id>>"
    fields: {refno: "=key"}
""")
    assert documents(tmp_path / "flow.yaml")[0]["payload"] == {"refno": "mine"}
    write(tmp_path, "when.yaml", HEAD + """\
routes:
  - name: sale
    when: "key"
    target: {connector: file, document: records, params: {path: out/s.jsonl}}
    key: "BH_<<order.id>>"
""")
    assert any("key" in p for p in problems_of(tmp_path / "when.yaml"))   # fields only


def _run(folder: Path, store) -> None:
    plan = load_plan(folder / "flow.yaml")
    summary = run_flow(plan, tenant="default", store=store, connectors=Connectors("default", folder))
    assert summary.records == 1 and not summary.failed


def test_validate_warns_when_a_key_template_changes_after_documents_were_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HEXAFLOW_FILE_OUT", str(tmp_path / "out"))
    (tmp_path / "orders.jsonl").write_text(json.dumps(ORDER) + "\n", encoding="utf-8")
    flow = write(tmp_path, "flow.yaml", FACTORED)
    store = open_store(str(tmp_path / "state.db"))
    _run(tmp_path, store)
    assert key_change_problems(load_spec(flow), store.db) == []
    changed = FACTORED.replace('key: "BH_<<order.id>>"', 'key: "TL-<<order.name>>"')
    flow.write_text(changed, encoding="utf-8")
    line = changed[:changed.index("TL-")].count("\n") + 1
    [warning] = key_change_problems(load_spec(flow), store.db)
    assert (warning.file, warning.line, warning.severity) == (str(flow), line, "warning")
    assert warning.message == ("route sale's key template changed from 'BH_<<order.id>>' to "
                               "'TL-<<order.name>>': 1 document(s) already in the ledger under "
                               "the old keys will not be found (they are re-keyed)")
    store.close()
    assert [p.line for p in key_change_warnings([str(flow)], str(tmp_path / "state.db"))] == [line]
    monkeypatch.setenv("HEXAFLOW_STATE", str(tmp_path / "state.db"))
    result = CliRunner().invoke(main, ["validate", str(flow)])
    assert result.exit_code == 0 and "key template changed" in result.output, result.output
    assert key_change_warnings([str(flow)], str(tmp_path / "none.db")) == []


# -- the orders flow, factored mechanically: the same documents -----------------------------
def _override(base, target):
    """The keys to write beside ``use: base`` so that the merge gives ``target``."""
    out = {}
    for name in base:
        if name not in target:
            out[name] = None                            # removed
    for name, value in target.items():
        if value is None:
            if name not in base or base[name] is not None:
                out[name] = {"const": None}             # a null value, not a removal
        elif name not in base:
            out[name] = value
        elif isinstance(value, dict) and isinstance(base[name], dict):
            inner = _override(base[name], value)
            if inner:
                out[name] = inner
        elif value != base[name]:
            out[name] = value
    return out


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "factoring"


def test_explain_sees_the_resolved_flow(tmp_path, monkeypatch):
    monkeypatch.setenv("HEXAFLOW_STATE", str(tmp_path / "none.db"))
    record = tmp_path / "order.json"
    record.write_text(json.dumps({"id": 9, "name": "#9", "created_at": "2024-06-10T20:00:00Z",
                                  "fulfillment_status": "fulfilled", "total_price": 1,
                                  "customer": {"id": 3, "first_name": "A", "last_name": "B"},
                                  "line_items": [{"sku": "A", "quantity": 1, "price": 1}]}))
    result = CliRunner().invoke(main, ["explain", str(EXAMPLE / "flow.yaml"), "--record",
                                       str(record), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"BH_9"' in result.output and '"KH3"' in result.output and "WH01" in result.output


def test_the_validation_cache_sees_a_change_in_an_included_file(tmp_path):
    from hexaflow.cache import ValidationCache
    from hexaflow.validate import validate_paths

    folder = Path(shutil.copytree(EXAMPLE, tmp_path / "example"))
    flow = str(folder / "flow.yaml")
    assert validate_paths([flow], ValidationCache(tmp_path / "cache.json")).problems == []
    shared = folder / "shared" / "customer.yaml"
    shared.write_text(shared.read_text(encoding="utf-8").replace('"=customer_name"', '"=nobody"'),
                      encoding="utf-8")
    found = validate_paths([flow], ValidationCache(tmp_path / "cache.json")).problems
    assert [p.message.split(" → ")[0] for p in found] == ["route sales_order (use: sales_document)",
                                                        "route sales_voucher (use: sales_document)"]
    assert all("unknown name 'nobody'" in p.message for p in found)


def test_definitions_that_multiply_are_refused(tmp_path):
    lines = [f"  d{n}: {{a: {{use: d{n - 1}}}, b: {{use: d{n - 1}}}}}" for n in range(1, 40)]
    write(tmp_path, "flow.yaml", HEAD + "definitions:\n  d0: {x: 1}\n" + "\n".join(lines) + """
routes:
  - name: one
    target: {connector: file, document: records, params: {path: out/s.jsonl}}
    key: "K<<order.id>>"
    fields: {use: d39}
""")
    [problem] = problems_of(tmp_path / "flow.yaml")
    assert "values once its definitions are used" in problem


def test_a_definition_used_as_the_wrong_kind_of_piece_is_refused(tmp_path):
    write(tmp_path, "flow.yaml", HEAD + """\
definitions:
  line: {sku: "=line.sku", quantity: "=line.qty"}
  document:
    target: {connector: file, document: records, params: {path: out/s.jsonl}}
    fields: {a: 1}
routes:
  - {name: one, use: line}
  - name: two
    use: document
    key: "K<<order.id>>"
    fields: {nested: {use: document}}
""")
    text = "\n".join(problems_of(tmp_path / "flow.yaml"))
    assert "flow.yaml:11:22: error: definition 'line' is a block of fields (quantity, sku...), " \
           "used here as a route" in text
    assert "flow.yaml:15:28: error: definition 'document' is a document (it has target), " \
           "used here as fields" in text
