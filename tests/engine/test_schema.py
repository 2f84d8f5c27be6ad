"""The flow schema reads like documentation: every field has a description and an example."""
from __future__ import annotations

import json

from hexaflow.spec import flow_schema


def _properties(schema, path="$"):
    if isinstance(schema, dict):
        for name, sub in (schema.get("properties") or {}).items():
            yield f"{path}.{name}", sub
            yield from _properties(sub, f"{path}.{name}")
        for key in ("$defs",):
            for name, sub in (schema.get(key) or {}).items():
                yield from _properties(sub, f"{path}.{key}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from _properties(schema[key], f"{path}.{key}")
        for key in ("anyOf", "oneOf"):
            for i, sub in enumerate(schema.get(key) or []):
                yield from _properties(sub, f"{path}.{key}[{i}]")


def _resolve(schema, node):
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return schema["$defs"][name]
    return node


def test_every_field_has_a_description_and_an_example():
    schema = flow_schema()
    missing = []
    for path, node in _properties(schema):
        node = _resolve(schema, node)
        if "description" not in node:
            missing.append(f"{path}: description")
        if "examples" not in node and "enum" not in node and not path.endswith(".const"):
            missing.append(f"{path}: examples")
    assert missing == []


def test_schema_command_prints_the_schema(cli):
    result = cli("schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["$id"].endswith("flow.schema.json")
