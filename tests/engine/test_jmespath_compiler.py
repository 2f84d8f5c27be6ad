"""Compiled JMESPath gives exactly what jmespath's interpreter gives, on every node type."""
from __future__ import annotations

import jmespath
import pytest
from hypothesis import given, settings, strategies as st

from hexaflow.expressions import ExpressionCompiler
from hexaflow.functions import FunctionContext, Library, RecordError

EXPRESSIONS = [
    "a", "a.b", "a.b.c", "a[0]", "a[-1]", "a[1:3]", "a[::-1]", "a[*].b", "a[].b", "a[?b > `1`].b",
    "a[?b == 'x']", "*.b", "a.*", "a[][]", "[a, b]", "{x: a, y: b}", "a || b", "a && b", "!a",
    "!(a.b)", "a == b", "a != b", "a < b", "a >= `0`", "`[1, 2]`", "'text'", "@", "a | [0]",
    "length(a)", "contains(a, 'x')", "sort_by(a, &b)[0]", "max_by(a, &b).b", "map(&b, a)",
    "join(', ', a[].c)", "to_string(a)", "type(a)", "keys(a)", "not_null(b, a)", "a[?!c]",
    "sum(a[].b)", "a.b == `0`", "!`0`", "a[?b].c || 'none'", "merge(a, b)",
    # fast paths: comparisons with a literal, negation by type, built-ins' argument checks
    "a == 'x'", "a != 'x'", "a.b == 'y'", "a > `1`", "a <= `0.5`", "a < `-1`", "!b", "!(a.c)",
    "abs(a)", "sum(a)", "max(a)", "min(a)", "length(b)", "join(', ', a)", "join(a, b)",
    "to_string(b)", "starts_with(a, 'x')", "not_null(a, b, c)", "contains(b, a)",
]

VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "x", "y"])),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)),
    max_leaves=8)
DATA = st.dictionaries(st.sampled_from(["a", "b", "c"]), VALUES, max_size=3)


@pytest.fixture(scope="module")
def compiler():
    return ExpressionCompiler(Library(FunctionContext()))


def _interpreted(source, data, options):
    try:
        return ("ok", jmespath.search(source, data, options))
    except (jmespath.exceptions.JMESPathError, TypeError, ValueError):
        return ("error", None)   # the interpreter crashes on some mixed types; we refuse them


def _compiled(expr, data):
    try:
        return ("ok", expr(data))
    except RecordError:
        return ("error", None)


@pytest.mark.parametrize("source", EXPRESSIONS)
@settings(max_examples=60, deadline=None)
@given(data=DATA)
def test_compiled_matches_interpreter(compiler, source, data):
    expected = _interpreted(source, data, compiler.options)
    got = _compiled(compiler.expr(source), data)
    assert got == expected
