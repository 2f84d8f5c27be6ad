"""Compiling the three kinds of value a flow can hold: JMESPath expressions, Jinja templates with
``<< >>`` delimiters, and constants.

Everything is compiled once per flow into plain Python callables ``fn(scope) -> value``.
Common shapes take a fast path that skips the interpreters entirely: a JMESPath field chain
(``order.customer.id``) becomes a few ``dict.get`` calls, and a template made of text and simple
paths (``PC_<<order.id>>``) becomes a string join. Both fast paths behave exactly like the
interpreters they replace (tests/engine/test_expressions.py checks them against each other).

The scope is a dict of names: the record under its alias, ``tenant``, lookup tables, ``let``
values, ``history``, and inside ``each`` the item alias and ``position``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import jinja2
import jinja2.meta
import jinja2.nodes as jn
from jinja2.sandbox import SandboxedEnvironment

from hexaflow.errors import CompileError
from hexaflow.functions import (Library, RecordError, direct_functions, failure_reason,
                                jinja_callables, jmespath_options)
from hexaflow.jmespath_compiler import ClosureCompiler, Part, PartFn, field_keys
from hexaflow.jmespath_private import exceptions as jp_exc
from hexaflow.jmespath_private import jmespath
from hexaflow.limits import MAX_EXPRESSION_CHARS, MAX_EXPRESSION_DEPTH, MAX_TEXT
from hexaflow.money import to_json_number

Scope = dict[str, Any]
Fn = Callable[[Scope], Any]


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, '', [] and {} are false; 0 is true."""
    return not (value is None or value is False or value == "" or value == [] or value == {})


def jsonable(value: Any) -> Any:
    """Decimals (anywhere inside) as JSON numbers; everything else unchanged."""
    t = type(value)
    if t is Decimal:
        return to_json_number(value)
    if t is dict:
        return {k: jsonable(v) for k, v in value.items()}
    if t is list:
        return [jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- JMESPath
@dataclass(frozen=True)
class Expr:
    source: str
    names: frozenset[str]        # names the expression reads from the scope
    fn: Fn
    fast: bool                   # compiled to the field-chain fast path
    keys: tuple[str, ...] | None = None   # the chain's names (``order.id``: order, id) if fast
    # The same expression reporting the parts of its boolean skeleton (compiled on first use,
    # for a tracer: the plain ``fn`` above never pays for it).
    trace: Callable[[Scope], Part] | None = field(default=None, compare=False, repr=False)

    def __call__(self, scope: Scope) -> Any:
        return self.fn(scope)

    def traced(self, scope: Scope) -> Part:
        """The value in ``scope`` as a Part tree (root value: the expression's value)."""
        if self.trace is None:
            return Part("leaf", self.source.strip(), value=self.fn(scope))
        return self.trace(scope)


def _root_names(node: dict[str, Any], out: set[str]) -> None:
    """Collect the names an AST reads from the root scope (not from projected elements)."""
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        out.add(node["value"])
    elif kind in ("subexpression", "index_expression", "projection", "value_projection",
                  "filter_projection", "pipe"):
        _root_names(children[0], out)      # the rest is evaluated relative to the left side
    elif kind == "function_expression":
        for child in children:
            if child["type"] != "expref":
                _root_names(child, out)
    elif kind in ("comparator", "and_expression", "or_expression", "not_expression",
                  "flatten", "multi_select_list", "multi_select_dict", "key_val_pair"):
        for child in children:
            _root_names(child, out)


class ExpressionCompiler:
    """Compiles JMESPath and Jinja for one flow (one function library, one Jinja environment)."""

    def __init__(self, library: Library):
        self.library = library
        self.options = jmespath_options(library)
        self.jinja = _make_jinja(library, strict_key=False)
        self.jinja_key = _make_jinja(library, strict_key=True)
        self._function_names = set(self.options.custom_functions.FUNCTION_TABLE)
        self._closures = ClosureCompiler(self.options.custom_functions, direct_functions(library))
        # Compiled once per distinct text: a flow repeats fields (YAML anchors and merge keys).
        self._exprs: dict[str, Expr] = {}
        self._templates: dict[tuple[str, bool], Template] = {}

    # -- JMESPath -------------------------------------------------------------------
    def expr(self, source: str) -> Expr:
        """``source`` compiled (an Expr is immutable, so one serves every use)."""
        if not isinstance(source, str):
            return self._compile_expr(source)
        if source not in self._exprs:
            try:
                self._exprs[source] = self._compile_expr(source)
            except RecursionError:     # the parsers recurse per level; _check_size bounds most
                raise _too_deep("expression") from None
        return self._exprs[source]

    def _compile_expr(self, source: str) -> Expr:
        if not isinstance(source, str) or not source.strip():
            raise CompileError("empty expression", 0, "write a JMESPath expression, e.g. order.id")
        _check_size(source, "expression")
        try:
            parsed = jmespath.compile(source)
        except jp_exc.LexerError as exc:
            raise CompileError(f"invalid JMESPath: {exc.msg}", exc.lexer_position,
                               _jmespath_hint(source)) from None
        except jp_exc.ParseError as exc:
            token = exc.token_value or "end of expression"
            hint = _jmespath_hint(source)
            if isinstance(exc.token_value, (int, float)) or str(token).isdigit():
                hint = f"numbers are literals in JMESPath: write `{token}` (in backticks)"
            raise CompileError(f"invalid JMESPath: {exc.msg} near {token!r}", exc.lex_position,
                               hint) from None
        if _tree_depth(parsed.parsed) > MAX_EXPRESSION_DEPTH:
            raise _too_deep("expression")
        self._check_functions(parsed.parsed, source)
        _check_negated_paths(parsed.parsed, source)
        names: set[str] = set()
        _root_names(parsed.parsed, names)
        try:
            compiled = self._closures.compile_expression(parsed.parsed)
        except jp_exc.JMESPathError as exc:
            raise CompileError(f"{source!r}: {exc}", 0) from None
        keys = field_keys(parsed.parsed)
        return Expr(source, frozenset(names), compiled, keys is not None,
                    None if keys is None else tuple(keys), self._lazy_trace(source))

    def _lazy_trace(self, source: str) -> Callable[[Scope], Part]:
        compiled: list[PartFn] = []

        def trace(scope: Scope) -> Part:
            if not compiled:
                compiled.append(self._closures.compile_traced(source))
            return compiled[0](scope)
        return trace

    def _check_functions(self, node: dict[str, Any], source: str) -> None:
        if node["type"] == "function_expression" and node["value"] not in self._function_names:
            from hexaflow.problems import did_you_mean
            known = ", ".join(sorted(self._function_names))
            raise CompileError(f"unknown function {node['value']}()", source.find(node["value"]),
                               did_you_mean(node["value"], self._function_names)
                               or f"known functions: {known}")
        for child in node.get("children", []):
            if isinstance(child, dict):
                self._check_functions(child, source)

    # -- Jinja ----------------------------------------------------------------------
    def template(self, source: str, key: bool = False) -> "Template":
        """``source`` compiled (a Template is immutable, so one serves every use)."""
        if not isinstance(source, str):
            return self._compile_template(source, key)
        if (source, key) not in self._templates:
            try:
                self._templates[(source, key)] = self._compile_template(source, key)
            except RecursionError:
                raise _too_deep("template") from None
        return self._templates[(source, key)]

    def _compile_template(self, source: str, key: bool) -> "Template":
        env = self.jinja_key if key else self.jinja
        _check_size(source, "template")
        try:
            ast = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise CompileError(f"invalid template: {exc.message}",
                               _line_offset(source, exc.lineno), _template_hint(exc.message or "")) from None
        try:
            names = frozenset(jinja2.meta.find_undeclared_variables(ast)) - set(env.globals)
        except jinja2.TemplateSyntaxError as exc:     # an unknown filter or test
            raise _unknown_filter(source, env, exc) from None
        fast = _fast_template(ast, env, key)
        if fast is not None:
            return Template(source, names, fast, True)
        compiled = env.from_string(source)

        def render(scope: Scope) -> str:
            try:
                text = compiled.render(scope)
            except RecordError:
                raise
            except jinja2.UndefinedError as exc:
                raise RecordError(f"template {source!r}: {exc.message}") from None
            except jinja2.TemplateError as exc:
                raise RecordError(f"template {source!r}: {exc}") from None
            except Exception as exc:         # a filter given a value it cannot take
                raise RecordError(f"template {source!r}: {failure_reason(exc)}") from None
            if len(text) > MAX_TEXT:
                raise RecordError(f"template {source!r} renders {len(text):,} characters, more "
                                  f"than the {MAX_TEXT:,} a template may")
            return text
        return Template(source, names, render, False)


@dataclass(frozen=True)
class Template:
    source: str
    names: frozenset[str]
    fn: Fn
    fast: bool

    def __call__(self, scope: Scope) -> str:
        return self.fn(scope)


def _finalize_value(value: Any) -> Any:
    if value is None:
        raise RecordError("a value in the template is null; use <<x or ''>> if empty is meant")
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _finalize_key_value(value: Any) -> Any:
    value = _finalize_value(value)
    if value == "" or isinstance(value, jinja2.Undefined):
        raise RecordError("a value in the document key is empty; a key is never built from "
                          "an empty value")
    return value


def _check_size(source: str, what: str) -> None:
    """Refuse, before parsing, a source longer than the limit or with brackets nested deeper
    than it: both parsers recurse once per level and would crash, not fail (hexaflow.limits)."""
    if len(source) > MAX_EXPRESSION_CHARS:
        raise CompileError(f"the {what} is {len(source):,} characters long, more than the "
                           f"{MAX_EXPRESSION_CHARS:,} allowed", 0,
                           "split it into `let:` values")
    depth, quote = 0, ""
    for offset, char in enumerate(source):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
            if depth > MAX_EXPRESSION_DEPTH:
                raise _too_deep(what, offset)
        elif char in ")]}":
            depth -= 1


def _tree_depth(node: dict[str, Any]) -> int:
    """Levels of a JMESPath syntax tree (iteratively: the tree may be deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in current.get("children", [])
                     if isinstance(child, dict))
    return deepest


def _too_deep(what: str, offset: int | None = 0) -> CompileError:
    return CompileError(f"the {what} is nested more than {MAX_EXPRESSION_DEPTH} levels deep",
                        offset, "split it into `let:` values")


class _BoundedSandbox(SandboxedEnvironment):
    """The Jinja sandbox, with the operators that multiply text bounded by MAX_TEXT: without
    this, ``<<'x' * 900000000>>`` is folded into a 900 MB constant while the flow compiles."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for text, times in ((left, right), (right, left)):
                if isinstance(text, (str, list)) and isinstance(times, int) \
                        and len(text) * times > MAX_TEXT:
                    raise RecordError(f"'*' would make {len(text) * times:,} characters or "
                                      f"items, more than the {MAX_TEXT:,} a template may")
        elif operator == "**" and isinstance(right, (int, Decimal)) and abs(right) > 1000:  # type: ignore[operator]
            raise RecordError(f"'**' with an exponent of {right}: at most 1000")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_widths(value.__self__)    # '{:>900000000}'.format(x)
        return wrapped


def _check_widths(fmt: str) -> None:
    """Refuse a format string whose field width or precision would exceed MAX_TEXT."""
    for number in re.findall(r"[%:][-+ #0<>^=,_]*(\d+)", fmt):
        if int(number) > MAX_TEXT:
            raise RecordError(f"a field width of {int(number):,} in {fmt[:40]!r}: at most "
                              f"{MAX_TEXT:,}")


def _bounded_width(filter_fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter whose width arguments (center, indent, wordwrap, format) are bounded."""
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and arg > MAX_TEXT:
                raise RecordError(f"{filter_fn.__name__}: a width of {arg:,}: at most "
                                  f"{MAX_TEXT:,}")
        if filter_fn.__name__ == "do_format" and isinstance(value, str):
            _check_widths(value)
        return filter_fn(value, *args, **kwargs)
    bounded.__name__ = filter_fn.__name__
    return bounded


def _make_jinja(library: Library, strict_key: bool) -> SandboxedEnvironment:
    env = _BoundedSandbox(
        variable_start_string="<<", variable_end_string=">>",
        block_start_string="<%", block_end_string="%>",
        comment_start_string="<#", comment_end_string="#>",
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
        finalize=_finalize_key_value if strict_key else _finalize_value)
    for name in ("center", "indent", "wordwrap", "format", "truncate"):
        env.filters[name] = _bounded_width(env.filters[name])
    callables = jinja_callables(library)
    env.filters.update(callables)
    env.globals.update(callables)
    return env


_DICT_ATTRS = frozenset(dir(dict))


def simple_path(node: jn.Node) -> list[str | int] | None:
    """['order', 'id'] for ``order.id`` / ``order['id']``; None for anything else."""
    if isinstance(node, jn.Name) and node.ctx == "load":
        return [node.name]
    if isinstance(node, jn.Getattr) and node.attr not in _DICT_ATTRS:
        base = simple_path(node.node)
        return None if base is None else base + [node.attr]
    if isinstance(node, jn.Getitem) and isinstance(node.arg, jn.Const) \
            and isinstance(node.arg.value, (str, int)) and not isinstance(node.arg.value, bool):
        base = simple_path(node.node)
        return None if base is None else base + [node.arg.value]
    return None


def _fast_template(ast: jn.Template, env: SandboxedEnvironment, key: bool) -> Fn | None:
    """A join of literal text and simple paths (optionally through one library filter
    without arguments), or None when the template needs Jinja."""
    if len(ast.body) != 1 or not isinstance(ast.body[0], jn.Output):
        return None
    parts: list[Any] = []
    for node in ast.body[0].nodes:
        if isinstance(node, jn.TemplateData):
            parts.append(node.data)
            continue
        filt = None
        if isinstance(node, jn.Filter) and not node.args and not node.kwargs \
                and node.dyn_args is None and node.dyn_kwargs is None \
                and node.name in env.filters and node.name in env.globals:
            filt = env.filters[node.name]
            node = node.node    # type: ignore[assignment]
        path = simple_path(node)
        if path is None:
            return None
        parts.append((path, filt))
    finalize = _finalize_key_value if key else _finalize_value

    def undefined(scope: Scope, path: list[str | int]) -> RecordError:
        """The error for a path that is not there, naming it up to the missing step."""
        value: Any = scope
        found = 0      # the steps that are there; the error names the first missing one
        for step in path:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                break
            found += 1
        shown = ".".join(str(p) for p in path[: found + 1])
        return RecordError(f"{shown} is undefined")

    def render(scope: Scope) -> str:
        out = []
        for part in parts:
            if type(part) is str:
                out.append(part)
            else:
                path, filt = part
                value = scope
                try:
                    for step in path:
                        value = value[step]
                except (KeyError, IndexError, TypeError):
                    raise undefined(scope, path) from None
                if filt is not None:
                    try:
                        value = filt(value)
                    except RecordError:
                        raise
                    except Exception as exc:
                        raise RecordError(f"{filt.__name__}: {failure_reason(exc)}") from None
                if value is None or (key and value == ""):
                    shown = ".".join(str(p) for p in path)
                    state = "null" if value is None else "empty"
                    raise RecordError(f"{shown} is {state}" + (
                        "; a key is never built from an empty value" if key
                        else f"; write <<{shown} or ''>> if empty text is meant"))
                out.append(str(finalize(value)))
        return "".join(out)
    return render


def _check_negated_paths(node: dict[str, Any], source: str) -> None:
    """``!a.b`` parses as ``(!a).b``, which is always null: refuse it with the fix."""
    if node["type"] in ("subexpression", "index_expression", "projection") and \
            node["children"][0]["type"] == "not_expression":
        inner = source[source.find("!"):].split()[0].rstrip(")&|,")
        raise CompileError(f"{inner!r} negates only its first name, so it is always null",
                           source.find("!"), f"write !({inner[1:]}) to negate the whole path")
    for child in node.get("children", []):
        if isinstance(child, dict):
            _check_negated_paths(child, source)


def _line_offset(source: str, lineno: int | None) -> int | None:
    if not lineno or lineno <= 1:
        return None
    lines = source.split("\n")
    return sum(len(line) + 1 for line in lines[: lineno - 1])


def _unknown_filter(source: str, env: SandboxedEnvironment, exc: jinja2.TemplateSyntaxError) -> CompileError:
    """Jinja's "No filter named 'x'." (or test), as a CompileError at the name with the known ones."""
    import re

    from hexaflow.problems import did_you_mean
    message = exc.message or str(exc)
    found = re.match(r"No (filter|test) named '([^']*)'", message)
    if not found:
        return CompileError(f"invalid template: {message}", _line_offset(source, exc.lineno),
                            _template_hint(message))
    kind, name = found.groups()
    at = re.search(r"(?:\||\bis(?:\s+not)?)\s*(" + re.escape(name) + r")\b", source)
    if kind == "filter":
        ours = sorted(set(env.filters) & set(env.globals))
        known = f"the flow functions ({', '.join(ours)}) and Jinja's filters (e.g. default, round, join)"
    else:
        known = ", ".join(sorted(env.tests))
    return CompileError(f"unknown template {kind} {name!r}", at.start(1) if at else None,
                        did_you_mean(name, list(env.filters if kind == "filter" else env.tests))
                        or f"{kind}s here: {known}")


def _template_hint(message: str) -> str:
    if "end of print statement" in message or "unexpected end of template" in message \
            or "unexpected '<'" in message:
        return "every '<<' needs a closing '>>', e.g. PC_<<order.id>>"
    return "templates use << expression >> for values and <% if ... %> for logic"


def _jmespath_hint(source: str) -> str:
    if "<<" in source or ">>" in source:
        return "this field takes a JMESPath expression, not a template"
    if any(ord(ch) > 127 for ch in source):
        return "text with accents is not a field name: quote literal text as 'text'"
    return "see docs/flows.md for the expression syntax, e.g. order.line_items[].sku"
