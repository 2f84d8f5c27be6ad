"""Everything hexaflow takes from jmespath beyond its public ``compile``/``search``: one module,
so that a jmespath upgrade that moves a private name breaks here and nowhere else.

- ``equals``, ``is_actual_number``, ``is_comparable``: the interpreter's own comparisons
  (jmespath.visitor), which the closure compiler (hexaflow.jmespath_compiler) must match;
- ``functions``: jmespath.functions (the ``Functions`` base class, ``signature``), which the
  flow library extends (hexaflow.functions);
- ``parse_spans``: jmespath's own parser, noting where in the source each node was written,
  so that explain can show the parts of a condition as the integrator wrote them.
"""
from __future__ import annotations

from typing import Any

import jmespath
from jmespath import exceptions, functions, parser
from jmespath.lexer import Lexer
from jmespath.visitor import _equals as equals, _is_actual_number as is_actual_number
from jmespath.visitor import _is_comparable as is_comparable

__all__ = ["Lexer", "compile_tree", "equals", "exceptions", "functions", "is_actual_number",
           "is_comparable", "jmespath", "parse_spans"]


def compile_tree(source: str) -> dict[str, Any]:
    """The AST of ``source`` (jmespath's parse, cached by jmespath)."""
    return jmespath.compile(source).parsed


class _SpanParser(parser.Parser):
    """jmespath's Pratt parser, recording (start, end) offsets in the source of the nodes it
    builds, innermost first (a parenthesised part keeps the span without its parentheses)."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: dict[int, tuple[int, int]] = {}
        self.nodes: list[Any] = []    # every noted node kept alive: an id is never reused

    def _expression(self, binding_power: int = 0) -> Any:
        # jmespath.parser.Parser._expression, with the spans noted after each step.
        left_token = self._lookahead_token(0)
        self._advance()
        nud_function: Any = getattr(self, "_token_nud_%s" % left_token["type"], self._error_nud_token)
        left = nud_function(left_token)
        self._note(left, left_token)
        current_token = self._current_token()
        while binding_power < self.BINDING_POWER[current_token]:
            led = getattr(self, "_token_led_%s" % current_token, None)
            if led is None:
                self._error_led_token(self._lookahead_token(0))
            else:
                self._advance()
                left = led(left)
                self._note(left, left_token)
                current_token = self._current_token()
        return left

    def _note(self, node: Any, first: dict[str, Any]) -> None:
        if isinstance(node, dict):
            self.nodes.append(node)
            # up to the next token's start: jmespath's token ends are not reliable
            self.spans.setdefault(id(node), (first["start"], self._tokens[self._index]["start"]))


def parse_spans(source: str) -> tuple[dict[str, Any], dict[int, tuple[int, int]]]:
    """(AST, id(node) → (start, end) in ``source``, trailing blanks included). The AST is a
    fresh one (not jmespath's cached tree), so the ids stay valid while the caller holds it."""
    span_parser = _SpanParser()
    tree = span_parser._parse(source).parsed
    return tree, span_parser.spans
