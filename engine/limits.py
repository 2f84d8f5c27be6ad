"""How large a flow, the files it names and what it computes may get (docs/flows.md, "Limits").

A flow file may come from anyone and ``hexaflow validate`` runs on it in CI; a record comes
from a shop. Past these limits a flow file fails ``validate`` (and ``run``, which loads it the
same way) with ``file:line``, and a record fails alone, as a dead letter naming the field,
instead of exhausting memory or crashing. Every real flow is far below them: the largest,
mappings/orders.yaml, is 33 KB with 968 values nested 9 levels; its longest expression is
about 200 characters, 8 levels deep; its largest list a few dozen items.
"""
from __future__ import annotations

# -- files (hexaflow.yamlload, hexaflow.lookups) ------------------------------------------
MAX_FILE_BYTES = 1024 * 1024       # a flow, table, test file or coverage base: 1 MiB
MAX_VALUES = 50_000                # values in one YAML document, aliases and merge keys expanded
MAX_NESTING = 32                   # levels of mappings and lists in one YAML document

# -- expressions and templates (hexaflow.expressions) --------------------------------------
MAX_EXPRESSION_CHARS = 4_000       # characters in one JMESPath expression or template
MAX_EXPRESSION_DEPTH = 40          # levels of one expression's syntax tree (brackets included)
MAX_TEXT = 100_000                 # characters a template renders; items a `*` may repeat

# -- evaluating one record (hexaflow.jmespath_compiler) -------------------------------------
MAX_ITEMS = 1_000_000              # items the projections of one expression may collect
