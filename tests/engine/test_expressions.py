"""Fast paths behave exactly like the interpreters they replace; the function library is exact."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from hexaflow.expressions import CompileError, ExpressionCompiler
from hexaflow.functions import FunctionContext, Library, RecordError


@pytest.fixture(scope="module")
def compiler():
    return ExpressionCompiler(Library(FunctionContext(tables={"staff": {"7": {"code": "NV7"}}})))


SCOPES = [
    {"order": {"id": 1001, "name": "#1001", "customer": {"id": 5, "email": "a@b"}, "lines": [{"sku": "A"}]}},
    {"order": {"id": "x", "customer": None}},
    {"order": {}},
    {"order": None},
    {"order": [1, 2]},
    {},
]


@pytest.mark.parametrize("source", ["order", "order.id", "order.customer.id", "order.customer.email.x",
                                    "order.lines", "missing.path"])
@pytest.mark.parametrize("scope", SCOPES)
def test_field_chain_fast_path_matches_jmespath(compiler, source, scope):
    import jmespath
    expr = compiler.expr(source)
    assert expr.fast
    assert expr(scope) == jmespath.search(source, scope)


TEMPLATES = ["DH_<<order.id>>", "<<order.name>> / <<order.customer.email>>",
             "<<order['id']>>-<<order.lines[0].sku>>", "X<<order.id | lower>>"]


@pytest.mark.parametrize("source", TEMPLATES)
@pytest.mark.parametrize("scope", SCOPES)
def test_template_fast_path_matches_jinja(compiler, source, scope):
    fast = compiler.template(source)
    assert fast.fast
    slow = compiler.jinja.from_string(source)
    try:
        expected = slow.render(scope)
    except Exception:
        expected = "error"
    try:
        got = fast(scope)
    except RecordError:
        got = "error"
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "name", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=5),
                                 st.decimals(allow_nan=False, allow_infinity=False, places=2)),
                       max_size=3))
def test_key_templates_never_render_an_empty_or_null_value(compiler, record):
    key = compiler.template("PC_<<order.id>>", key=True)
    slow = compiler.jinja_key.from_string("PC_<<order.id>>")
    value = record.get("id", "missing")
    outcomes = []
    for render in (key, lambda s: slow.render(s)):
        try:
            outcomes.append(render({"order": record}))
        except Exception:
            outcomes.append("error")
    if value in (None, "", "missing"):
        assert outcomes == ["error", "error"]
    else:
        assert outcomes[0] == outcomes[1] != "error"
        assert outcomes[0] != "PC_"


def test_decimals_are_numbers_for_jmespath_builtins(compiler):
    scope = {"o": {"lines": [{"p": Decimal("1.5")}, {"p": Decimal("2")}]}}
    assert compiler.expr("sum(o.lines[].p)")(scope) == Decimal("3.5")
    assert compiler.expr("max(o.lines[].p)")(scope) == Decimal("2")
    assert compiler.expr("sort_by(o.lines, &p)[0].p")(scope) == Decimal("1.5")
    assert compiler.expr("type(o.lines[0].p)")(scope) == "number"


def test_money_rounds_half_up_to_the_dong(compiler):
    assert compiler.expr("money(`2.5`)")({}) == Decimal("3")
    assert compiler.expr("money(mul(o.p, `3`))")({"o": {"p": Decimal("0.5")}}) == Decimal("2")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=10**8))
def test_allocate_adds_up_exactly_with_the_remainder_on_the_largest_line(weights, total):
    lib = Library(FunctionContext())
    items = [{"n": i} for i in range(len(weights))]
    if sum(weights) == 0:
        total = 0
    out = lib.allocate(items, weights, total, "share")
    shares = [o["share"] for o in out]
    assert sum(shares) == total
    assert all(s >= 0 and s == int(s) for s in shares)
    if sum(weights):
        largest = max(range(len(weights)), key=lambda i: (weights[i], -i))
        for i, (w, s) in enumerate(zip(weights, shares)):
            exact = Decimal(total) * w / sum(weights)
            if i != largest:
                assert exact - 1 < s <= exact


def test_dates_are_in_the_flow_time_zone_with_1_to_7_fraction_digits():
    lib = Library(FunctionContext("Asia/Ho_Chi_Minh"))
    assert lib.local_datetime("2024-06-10T20:15:22.1234567Z") == "2024-06-11T03:15:22+07:00"
    assert lib.local_date("2024-06-10T17:00:00.1Z") == "2024-06-11"
    assert lib.local_format("2024-06-10T03:15:22Z", "%Y-%m-%d %H:%M:%S") == "2024-06-10 10:15:22"


def test_uuid5_is_deterministic_and_refuses_empty_parts():
    lib = Library(FunctionContext())
    assert lib.uuid5("t", "sales_order", 1) == lib.uuid5("t", "sales_order", "1")
    assert lib.uuid5("t", "sales_order", 1) != lib.uuid5("t", "receipt", 1)
    with pytest.raises(RecordError):
        lib.uuid5("t", None)


def test_numbered_gives_the_code_then_code_n(compiler):
    assert compiler.expr("numbered('BTL_7', `1`)")({}) == "BTL_7"
    assert compiler.expr("numbered('BTL_7', add(`1`, `2`))")({}) == "BTL_7_3"
    assert compiler.expr("numbered(`7`, `2`)")({}) == "7_2"
    assert compiler.template("<<numbered('PC_7', n)>>")({"n": 2}) == "PC_7_2"
    for bad in ("numbered('A', `0`)", "numbered('A', `1.5`)", "numbered('', `1`)"):
        with pytest.raises(RecordError, match="numbered"):
            compiler.expr(bad)({})


def test_lookup_without_default_is_an_error_naming_the_table(compiler):
    assert compiler.expr("lookup('staff', `7`).code")({}) == "NV7"
    assert compiler.expr("lookup('staff', `8`, 'NV0')")({}) == "NV0"
    with pytest.raises(RecordError, match="8 is not in table 'staff'"):
        compiler.expr("lookup('staff', `8`)")({})


def test_invalid_expression_reports_its_offset(compiler):
    with pytest.raises(CompileError) as info:
        compiler.expr("a.b ==")
    assert info.value.offset is not None


def test_functions_page_lists_exactly_the_library():
    import re
    from pathlib import Path
    from hexaflow.functions import FUNCTIONS
    page = (Path(__file__).resolve().parents[2] / "docs" / "functions.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", page, re.M))
    assert documented == set(FUNCTIONS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.text(st.characters(blacklist_categories=("Cs",)),
                                                 min_size=1, max_size=8)), min_size=1, max_size=4))
def test_uuid5_is_the_standard_uuid5_of_the_joined_parts(parts):
    import uuid
    from hexaflow.functions import ID_NAMESPACE
    expected = str(uuid.uuid5(ID_NAMESPACE, "|".join(str(p) for p in parts)))
    assert Library(FunctionContext()).uuid5(*parts) == expected


@pytest.mark.parametrize("text", ["2024-06-10T03:15:22.481234Z", "2024-06-10T20:15:22.000001Z",
                                  "2024-06-10 03:15:22.481234Z", "2024-06-10T03:15:22.48123xZ",
                                  "2024-13-10T03:15:22.481234Z", "2024-06-10T03:15:22.4812345"])
def test_canonical_timestamps_parse_as_the_general_path_does(text):
    from hexaflow.timeutil import parse_datetime

    def parsed(value):
        try:
            return parse_datetime(value)
        except ValueError as exc:
            return str(exc).replace(repr(value), "<value>")
    # A trailing space keeps the text off the canonical fast path (the general path strips it).
    assert parsed(text) == parsed(text + " ")


NUMBERS = st.one_of(st.integers(-10**6, 10**6),
                    st.decimals(allow_nan=False, allow_infinity=False, places=3,
                                min_value=-10**6, max_value=10**6))


@settings(max_examples=300, deadline=None)
@given(NUMBERS, NUMBERS)
def test_arithmetic_on_ints_is_the_arithmetic_on_their_decimals(a, b):
    """Ints skip the conversion to Decimal: results must be what converting first gives."""
    lib = Library(FunctionContext())
    da, db = Decimal(a), Decimal(b)
    for got, expected in [(lib.mul(a, b), Decimal(1) * da * db), (lib.add(a, b), Decimal(0) + da + db),
                          (lib.sub(a, b), da - db), (lib.net_of_vat(da, 8), lib.net_of_vat(da, Decimal(8)))]:
        assert type(got) is Decimal and got == expected
    if b == 0:
        with pytest.raises(RecordError, match="division by zero"):
            lib.div(a, b)
    else:
        got = lib.div(a, b)
        assert type(got) is Decimal and got == da / db


def test_payload_fields_read_straight_from_the_scope_give_what_their_expressions_give(tmp_path):
    """`fields` reads names and two-step paths without calling their compiled expressions."""
    import jmespath
    from hexaflow.expressions import jsonable
    from hexaflow.plan import compile_plan
    from hexaflow.spec import load_spec
    (tmp_path / "flow.yaml").write_text(
        "flow: fast_fields\n"
        "source: {connector: file, resource: records, params: {path: x.jsonl}, as: r}\n"
        "routes:\n"
        "  - name: out\n"
        "    target: {connector: file, document: records}\n"
        "    key: \"K_<<r.id>>\"\n"
        "    fields: {whole: \"=r\", first: 1, n: \"=r.n\", ab: \"=r.a.b\", text: \"<<r.id>>\", last: [x]}\n",
        encoding="utf-8")
    plan, problems = compile_plan(load_spec(tmp_path / "flow.yaml"))
    assert plan is not None, [p.text() for p in problems]
    records = [{"id": 1, "n": Decimal("2.50"), "a": {"b": Decimal("3")}},
               {"id": 2, "n": [Decimal("1.5")], "a": [1]}, {"id": 3, "n": {"x": Decimal("1")}, "a": "t"},
               {"id": 4, "a": None}, {"id": 5, "n": "text", "a": {"b": None}}]
    for record in records:
        payload = plan.evaluate(record).documents[0].payload
        assert list(payload) == ["whole", "first", "n", "ab", "text", "last"]
        scope = {"r": record}
        assert payload == {"whole": jsonable(record), "first": 1,
                           "n": jsonable(jmespath.search("r.n", scope)),
                           "ab": jsonable(jmespath.search("r.a.b", scope)),
                           "text": str(record["id"]), "last": ["x"]}


# -- conditionals evaluate only what they need (issue 12, finding 2) --------------------------
@pytest.mark.parametrize("source, scope, expected", [
    # the branch not taken would divide by zero
    ("if(line.amount > `0`, div(line.discount, line.amount), `0`)", {"line": {"amount": 0, "discount": 0}}, 0),
    ("if(line.amount > `0`, div(line.discount, line.amount), `0`)",
     {"line": {"amount": Decimal(4), "discount": Decimal(1)}}, Decimal("0.25")),
    ("line.amount != `0` && div(`1`, line.amount)", {"line": {"amount": 0}}, False),
    ("line.amount == `0` || div(`1`, line.amount)", {"line": {"amount": 0}}, True),
    # JMESPath truthiness: 0 is true, null and empty are false
    ("if(x, 'then', 'else')", {"x": 0}, "then"),
    ("if(x, 'then', 'else')", {"x": None}, "else"),
    ("if(x, 'then', 'else')", {"x": []}, "else"),
])
def test_conditionals_evaluate_only_the_branch_taken(compiler, source, scope, expected):
    assert compiler.expr(source)(scope) == expected


def test_the_eager_if_of_the_interpreter_has_the_same_truthiness():
    library = Library(FunctionContext())
    for condition, taken in ((0, "then"), (False, "else"), ("", "else"), ({}, "else"), ("x", "then")):
        assert library.if_(condition, "then", "else") == taken


@pytest.mark.parametrize("source, scope, reason", [
    ("money(x)", {"x": Decimal("1e30")}, "money(): 1E+30 is too large to be an amount"),
    ("money(x)", {"x": "NaN"}, "money: expected a number, got 'NaN'"),
    ("local_date(x)", {"x": "0001-01-01T00:00:00+14:00"}, "timestamp out of range"),
    ("allocate(lines, lines[].w, `10`, 'share')", {"lines": None}, "cannot allocate 10 over no lines"),
])
def test_a_value_no_function_can_take_is_a_record_error_naming_the_function(compiler, source,
                                                                           scope, reason):
    with pytest.raises(RecordError) as failure:
        compiler.expr(source)(scope)
    assert reason in str(failure.value)
