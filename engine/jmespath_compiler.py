"""JMESPath compiled to Python closures.

jmespath's TreeInterpreter walks the AST for every evaluation: a dict lookup per node plus
argument type checks per function call. A flow evaluates the same few dozen expressions for
every record, so each AST is turned once into nested closures with the interpreter's exact
semantics (the TreeInterpreter code is the specification; tests/engine/test_jmespath_compiler.py
compares both on generated expressions and data).

Functions from the flow library are called directly with their arity checked at compile time
(they check their own argument values). JMESPath's built-in functions run jmespath's own
argument type checks, worked out once per call site instead of on every call; a call that fails
them goes through jmespath's ``call_function``, so the errors stay exactly as documented.
"""
from __future__ import annotations

import operator
import threading
from decimal import Decimal
from dataclasses import dataclass, field
from typing import Any, Callable

from hexaflow.jmespath_private import equals as _jp_equals, exceptions as jp_exc
from hexaflow.jmespath_private import is_actual_number as _is_actual_number
from hexaflow.jmespath_private import is_comparable as _is_comparable
from hexaflow.jmespath_private import parse_spans

from hexaflow.functions import RecordError, failure_reason
from hexaflow.limits import MAX_ITEMS

Fn = Callable[[Any], Any]

_ORDERING = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}
# Types that jmespath's _is_comparable accepts, checked without its isinstance(x, Number) (an
# ABC check, slow); anything else still goes through _is_comparable.
_COMPARABLE = frozenset({str, int, float, Decimal})
# Types whose JMESPath negation is plain `not` (jmespath special-cases only numbers equal to 0).
_PLAIN_NOT = frozenset({bool, type(None), str, list, dict})


def _equals(x: Any, y: Any) -> bool:
    """jmespath's equality, where 0 and 1 never equal false and true. Text or null on either
    side cannot meet that case, so it is a plain ``==`` without the number checks."""
    if type(x) is str or type(y) is str or x is None or y is None:
        return x == y
    return _jp_equals(x, y)


def _comparable(x: Any) -> bool:
    return type(x) in _COMPARABLE or _is_comparable(x)


def _ordered(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    try:
        return compare(a, b)
    except TypeError:   # text against a number: jmespath itself would crash here
        raise RecordError(f"cannot compare {a!r} with {b!r}; turn the text into a number "
                          f"first with number(...)") from None


def _is_false(value: Any) -> bool:
    return value == "" or value == [] or value == {} or value is None or value is False


def field_keys(node: dict[str, Any]) -> list[str] | None:
    """['a', 'b', 'c'] for ``a.b.c`` (however the parser nests it); None for anything else."""
    if node["type"] == "field":
        return [node["value"]]
    if node["type"] != "subexpression":
        return None
    keys: list[str] = []
    for child in node["children"]:
        sub = field_keys(child)
        if sub is None:
            return None
        keys.extend(sub)
    return keys


def _field_chain(keys: list[str]) -> Fn:
    """``a.b.c``: the common case, without a closure per step."""
    if len(keys) == 2:
        k1, k2 = keys

        def get2(value: Any) -> Any:
            try:
                return value.get(k1).get(k2)
            except AttributeError:
                return None
        return get2

    def get(value: Any) -> Any:
        try:
            for key in keys:
                value = value.get(key)
        except AttributeError:
            return None
        return value
    return get


class _Expression:
    """An expression reference (``&expr``) as jmespath's built-ins expect it: they call
    ``ref.visit(ref.expression, element)``. The class name must stay ``_Expression`` because
    jmespath type-checks by class name."""

    def __init__(self, fn: Fn):
        self.expression = None
        self._fn = fn

    def visit(self, _node: Any, value: Any) -> Any:
        return self._fn(value)


@dataclass
class Part:
    """A condition, or a part of one, as evaluated: ``and`` / ``or`` / ``not`` of parts, or a
    ``leaf`` (any other expression) with its value; ``error`` for a part that failed where the
    evaluation would have skipped it (``a && b`` with ``a`` false)."""
    kind: str
    text: str
    children: list["Part"] = field(default_factory=list)
    value: Any = None
    error: str | None = None


PartFn = Callable[[Any], Part]
_BOOLEAN = {"and_expression": "and", "or_expression": "or", "not_expression": "not"}


def condition_parts(source: str) -> Part:
    """The boolean skeleton of ``source`` as Parts without values (what compile_traced
    reports, before evaluation): one leaf when the expression is not a boolean operator."""
    tree, spans = parse_spans(source)

    def part(node: dict[str, Any], root: bool = False) -> Part:
        kind = _BOOLEAN.get(node["type"])
        if kind is None:
            start, end = (0, len(source)) if root else spans.get(id(node), (0, len(source)))
            return Part("leaf", source[start:end].strip())
        return Part(kind, "", [part(child) for child in node["children"]])
    return part(tree, root=True)


class ClosureCompiler:
    def __init__(self, functions: Any, direct: dict[str, tuple[Callable[..., Any], int, bool]]):
        """``functions``: the jmespath Functions object (built-ins and library);
        ``direct``: library name → (callable, min args, variadic) to call without type checks."""
        self.functions = functions
        self.direct = direct

    def compile_expression(self, tree: dict[str, Any]) -> Fn:
        """The whole expression ``tree``; where it collects lists (projections, flattens,
        multi-selects), each evaluation may collect at most MAX_ITEMS items in all, so that
        ``a[*].[@, @, @][] ...`` nested a few times fails its record instead of exhausting
        memory."""
        fn = self.compile(tree)
        if not _collects(tree):
            return fn

        def bounded(value: Any) -> Any:
            _budget.left = MAX_ITEMS
            return fn(value)
        return bounded

    def compile_traced(self, source: str) -> PartFn:
        """``source`` compiled to report the value of every part of its boolean skeleton
        (``&&``, ``||``, ``!`` and what they join): the expression's value is the root Part's.
        Every part is evaluated, also those the expression skips; a skipped part that fails has
        its error recorded, a part the value needs fails the evaluation as it would untraced.
        Used only when a tracer asks (explain): compile_expression's closures never report."""
        tree, spans = parse_spans(source)

        def text(node: dict[str, Any]) -> str:
            start, end = spans.get(id(node), (0, len(source)))
            return source[start:end].strip()
        fn = self._traced(tree, text, root=source.strip())
        collects = _collects(tree)

        def evaluate(value: Any) -> Part:
            if collects:
                _budget.left = MAX_ITEMS
            return fn(value, False)
        return evaluate

    def _traced(self, node: dict[str, Any], text: Callable[[dict[str, Any]], str],
                root: str | None = None) -> Callable[[Any, bool], Part]:
        """fn(value, skipped) → Part; ``skipped``: the evaluation would not reach this part,
        so its failure is recorded instead of raised."""
        kind = _BOOLEAN.get(node["type"])
        if kind is None:
            plain, shown = self.compile(node), root if root is not None else text(node)

            def leaf(value: Any, skipped: bool) -> Part:
                if not skipped:
                    return Part("leaf", shown, value=plain(value))
                try:
                    return Part("leaf", shown, value=plain(value))
                except Exception as exc:   # noqa: BLE001 - shown, not raised: never reached
                    return Part("leaf", shown, error=getattr(exc, "message", None) or str(exc))
            return leaf
        parts = [self._traced(child, text) for child in node["children"]]

        def traced(value: Any, skipped: bool) -> Part:
            first = parts[0](value, skipped)
            if kind == "not":
                children, result = [first], _negate(first.value)
            else:
                passed = _is_false(first.value) == (kind == "and")     # decided by the left
                second = parts[1](value, skipped or passed)
                children, result = [first, second], first.value if passed else second.value
            error = "a part failed" if any(c.error for c in children) else None
            return Part(kind, "", children, result, error)
        return traced

    def compile(self, node: dict[str, Any]) -> Fn:
        method = getattr(self, "_" + node["type"], None)
        if method is None:
            raise NotImplementedError(node["type"])
        return method(node)

    # Each method below mirrors TreeInterpreter.visit_<type>.
    def _field(self, node: dict[str, Any]) -> Fn:
        key = node["value"]

        def field(value: Any) -> Any:
            try:
                return value.get(key)
            except AttributeError:
                return None
        return field

    def _chain(self, node: dict[str, Any]) -> Fn:
        keys = field_keys(node)
        if keys is not None:
            return _field_chain(keys)
        steps = [self.compile(c) for c in node["children"]]
        if len(steps) == 2:
            first, second = steps
            return lambda value: second(first(value))

        def chain(value: Any) -> Any:
            for step in steps:
                value = step(value)
            return value
        return chain

    _subexpression = _index_expression = _pipe = _chain

    def _comparator(self, node: dict[str, Any]) -> Fn:
        left, right = (self.compile(c) for c in node["children"])
        op = node["value"]
        literal = node["children"][1]    # the right side, often a literal
        if op in ("eq", "ne") and literal["type"] == "literal" and type(literal["value"]) is str:
            # `x == 'text'`, the common condition: with text on one side, jmespath's equality
            # is Python's.
            text = literal["value"]
            if op == "eq":
                return lambda value: left(value) == text
            return lambda value: left(value) != text
        if op == "eq":
            return lambda value: _equals(left(value), right(value))
        if op == "ne":
            return lambda value: not _equals(left(value), right(value))
        compare = _ORDERING[op]
        if literal["type"] == "literal" and type(literal["value"]) in (int, float):
            # `x > \`0\``: the literal side is a number, only x needs checking.
            number = literal["value"]

            def against_number(value: Any) -> Any:
                a = left(value)
                if not _comparable(a):
                    return None
                return _ordered(compare, a, number)
            return against_number

        def ordering(value: Any) -> Any:
            a, b = left(value), right(value)
            if not (_comparable(a) and _comparable(b)):
                return None
            return _ordered(compare, a, b)
        return ordering

    def _current(self, node: dict[str, Any]) -> Fn:
        return lambda value: value

    _identity = _current

    def _expref(self, node: dict[str, Any]) -> Fn:
        ref = _Expression(self.compile(node["children"][0]))
        return lambda value: ref

    def _function_expression(self, node: dict[str, Any]) -> Fn:
        name = node["value"]
        args = [self.compile(c) for c in node["children"]]
        if name in self.direct:
            fn, minimum, variadic = self.direct[name]
            count = len(args)
            if count < minimum or (not variadic and count > minimum):
                error = jp_exc.VariadictArityError if variadic else jp_exc.ArityError
                raise error(minimum, count, name)
            if name == "if":
                return _lazy_if(*args)
            return _direct_call(name, fn, args)
        if name not in self.functions.FUNCTION_TABLE:
            raise jp_exc.UnknownFunctionError(f"Unknown function: {name}()")
        call = self.functions.call_function
        spec = self.functions.FUNCTION_TABLE[name]
        function, functions = spec["function"], self.functions
        fits = _argument_check(functions, spec["signature"], len(args))
        single = args[0] if len(args) == 1 else None   # length(x), sum(x)...: no comprehension

        def builtin(value: Any) -> Any:
            resolved = [single(value)] if single is not None else [arg(value) for arg in args]
            try:
                if fits is not None and fits(resolved):
                    return function(functions, *resolved)
                return call(name, resolved)     # raises jmespath's own arity or type error
            except RecordError:
                raise
            except (jp_exc.JMESPathError, TypeError, ValueError) as exc:
                raise RecordError(f"{name}(): {exc}") from None
            except Exception as exc:     # e.g. sum() of Decimals beyond Decimal's range
                raise RecordError(f"{name}(): {failure_reason(exc)}") from None
        return builtin

    def _filter_projection(self, node: dict[str, Any]) -> Fn:
        base, project, condition = (self.compile(c) for c in node["children"])

        def filter_projection(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            collected = []
            for element in items:
                if not _is_false(condition(element)):
                    current = project(element)
                    if current is not None:
                        collected.append(current)
            _spend(len(collected))
            return collected
        return filter_projection

    def _flatten(self, node: dict[str, Any]) -> Fn:
        base = self.compile(node["children"][0])

        def flatten(value: Any) -> Any:
            items = base(value)
            if not isinstance(items, list):
                return None
            merged = []
            for element in items:
                if isinstance(element, list):
                    merged.extend(element)
                else:
                    merged.append(element)
            _spend(len(merged))
            return merged
        return flatten

    def _index(self, node: dict[str, Any]) -> Fn:
        index = node["value"]

        def at(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[index]
            except IndexError:
                return None
        return at

    def _slice(self, node: dict[str, Any]) -> Fn:
        window = slice(*node["children"])
        return lambda value: value[window] if isinstance(value, list) else None

    def _key_val_pair(self, node: dict[str, Any]) -> Fn:
        return self.compile(node["children"][0])

    def _literal(self, node: dict[str, Any]) -> Fn:
        constant = node["value"]
        return lambda value: constant

    def _multi_select_dict(self, node: dict[str, Any]) -> Fn:
        pairs = [(c["value"], self.compile(c)) for c in node["children"]]

        def multi_dict(value: Any) -> Any:
            if value is None:
                return None
            return {key: fn(value) for key, fn in pairs}
        return multi_dict

    def _multi_select_list(self, node: dict[str, Any]) -> Fn:
        items = [self.compile(c) for c in node["children"]]

        def multi_list(value: Any) -> Any:
            if value is None:
                return None
            _spend(len(items))
            return [fn(value) for fn in items]
        return multi_list

    def _or_expression(self, node: dict[str, Any]) -> Fn:
        left, right = (self.compile(c) for c in node["children"])

        def either(value: Any) -> Any:
            matched = left(value)
            if matched is None or matched is False or matched == "" or matched == [] \
                    or matched == {}:      # _is_false, inlined: `a || b` is everywhere
                return right(value)
            return matched
        return either

    def _and_expression(self, node: dict[str, Any]) -> Fn:
        left, right = (self.compile(c) for c in node["children"])

        def both(value: Any) -> Any:
            matched = left(value)
            if matched is None or matched is False or matched == "" or matched == [] \
                    or matched == {}:      # _is_false, inlined
                return matched
            return right(value)
        return both

    def _not_expression(self, node: dict[str, Any]) -> Fn:
        inner = self.compile(node["children"][0])

        def negate(value: Any) -> Any:
            result = inner(value)
            if type(result) in _PLAIN_NOT:
                return not result
            return _negate(result)
        return negate

    def _projection(self, node: dict[str, Any]) -> Fn:
        base, project = (self.compile(c) for c in node["children"])

        def projection(value: Any) -> Any:
            items = base(value)
            return _project(project, items) if isinstance(items, list) else None
        return projection

    def _value_projection(self, node: dict[str, Any]) -> Fn:
        base, project = (self.compile(c) for c in node["children"])

        def value_projection(value: Any) -> Any:
            try:
                items = base(value).values()
            except AttributeError:
                return None
            return _project(project, items)
        return value_projection


def _negate(result: Any) -> Any:
    if type(result) in _PLAIN_NOT:
        return not result
    if _is_actual_number(result) and result == 0:
        return False
    return not result


def _direct_call(name: str, fn: Callable[..., Any], args: list[Fn]) -> Fn:
    """A library function called on its evaluated arguments (unrolled for the usual arities).
    Anything it raises other than a RecordError (a value too large for a Decimal, a date out
    of range, a wrong type inside a list) becomes one naming the function: a bad value fails
    its record, never the run. The ``try`` costs nothing until something is raised."""
    def failed(exc: Exception) -> RecordError:
        return RecordError(f"{name}(): {failure_reason(exc)}")

    if len(args) == 1:
        (a,) = args

        def call1(value: Any) -> Any:
            try:
                return fn(a(value))
            except RecordError:
                raise
            except Exception as exc:
                raise failed(exc) from None
        return call1
    if len(args) == 2:
        a, b = args

        def call2(value: Any) -> Any:
            try:
                return fn(a(value), b(value))
            except RecordError:
                raise
            except Exception as exc:
                raise failed(exc) from None
        return call2

    def call(value: Any) -> Any:
        try:
            return fn(*[arg(value) for arg in args])
        except RecordError:
            raise
        except Exception as exc:
            raise failed(exc) from None
    return call


def _lazy_if(condition: Fn, then: Fn, otherwise: Fn) -> Fn:
    """``if(c, a, b)`` evaluating only the branch taken, so that the other may fail (e.g.
    ``if(line.amount > `0`, div(x, line.amount), `0`)`` on a free line). Truthiness as
    ``Library.if_``."""
    def lazy_if(value: Any) -> Any:
        if _is_false(condition(value)):
            return otherwise(value)
        return then(value)
    return lazy_if


def _argument_check(functions: Any, signature: list[dict[str, Any]],
                    count: int) -> Callable[[list[Any]], bool] | None:
    """A test on a built-in's resolved arguments that holds exactly when jmespath's own checks
    (``Functions._validate_arguments``) pass, with the allowed types worked out once instead of
    on every call. None when the arity is wrong: every call then fails in jmespath."""
    variadic = bool(signature) and bool(signature[-1].get("variadic"))
    if count < len(signature) or (not variadic and count != len(signature)):
        return None
    checks = []
    for position, param in enumerate(signature):
        if param["types"]:
            allowed, subtypes = functions._get_allowed_pytypes(param["types"])
            checks.append((position, frozenset(allowed), [frozenset(s) for s in subtypes]))

    def fits(args: list[Any]) -> bool:
        for position, allowed, subtypes in checks:
            current = args[position]
            if type(current).__name__ not in allowed:
                return False
            if len(subtypes) == 1:
                names = subtypes[0]
            elif subtypes and current:    # the first element decides which subtype applies
                first = type(current[0]).__name__
                names = next((s for s in subtypes if first in s), None)  # type: ignore[arg-type]
                if names is None:
                    return False
            else:
                continue
            for element in current:
                if type(element).__name__ not in names:
                    return False
        return True
    return fits


def _project(project: Fn, items: Any) -> list[Any]:
    """Apply ``project`` to each element, leaving out nulls (JMESPath projection rule)."""
    collected = []
    for element in items:
        current = project(element)
        if current is not None:
            collected.append(current)
    _spend(len(collected))
    return collected


class _Budget(threading.local):
    """Items the current evaluation may still collect (one per thread: serve runs flows in
    threads). ``compile_expression`` resets it for each evaluation."""

    def __init__(self) -> None:
        self.left = MAX_ITEMS


_budget = _Budget()
_COLLECTING = frozenset({"projection", "value_projection", "filter_projection", "flatten",
                         "multi_select_list"})


def _spend(count: int) -> None:
    _budget.left -= count
    if _budget.left < 0:
        raise RecordError(f"the expression collects more than {MAX_ITEMS:,} items")


def _collects(node: dict[str, Any]) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if current["type"] in _COLLECTING:
            return True
        stack.extend(c for c in current.get("children", []) if isinstance(c, dict))
    return False
