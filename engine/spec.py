"""Loading a flow file and checking it against the flow JSON Schema (engine/schema/)."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexaflow.problems import ERROR, Problem, did_you_mean, path_text
from hexaflow.yamlload import SourceMap, SpecSyntaxError, parse_yaml, read_text

SCHEMA_PATH = Path(__file__).parent / "schema" / "flow.schema.json"
FLOW_MARKERS = ("flow", "source", "routes")


def schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def flow_schema() -> dict[str, Any]:
    return json.loads(schema_text())


@dataclass
class LoadedSpec:
    path: Path
    display: str          # the path as the user should see it in messages
    data: Any
    smap: SourceMap
    # What resolving definitions and includes found (hexaflow.resolve), and the files read.
    problems: list[Problem] = field(default_factory=list)
    included: list[Path] = field(default_factory=list)

    def problem(self, path: tuple, message: str, hint: str = "", *, key: bool = False,
                offset: int | None = None, severity: str = ERROR) -> Problem:
        """A problem at the value (or key) found at ``path``; ``offset`` points inside a
        single-line scalar (e.g. the character where an expression breaks)."""
        pos = self.smap.at(path, key)
        col = pos.col
        if offset is not None and not key:
            col += offset + (1 if pos.quoted else 0)
        if pos.via:    # written in a definition or an included file: say where, and how
            outer = pos.via[0]
            steps = [outer.what] + [f"{v.file}:{v.line}:{v.col} {v.what}" for v in pos.via[1:]]
            steps.append(f"{pos.file or self.display}:{pos.line}:{col}")
            return Problem(outer.file, outer.line, outer.col, f"{' → '.join(steps)}: {message}",
                           hint, severity)
        return Problem(pos.file or self.display, pos.line, col, message, hint, severity)


def load_spec(path: Path, display: str | None = None) -> LoadedSpec:
    """Parse a flow file. Raises SpecSyntaxError for files that are not YAML."""
    display = display or str(path)
    try:
        text = read_text(path, display)
    except OSError as exc:
        raise SpecSyntaxError(display, 1, 1, f"cannot read flow file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        before = exc.object[:exc.start]
        line, col = before.count(b"\n") + 1, exc.start - before.rfind(b"\n")
        raise SpecSyntaxError(display, line, col, f"the flow file is not UTF-8 text "
                              f"(byte 0x{exc.object[exc.start]:02x})",
                              "save it as UTF-8 in your editor") from None
    data, smap = parse_yaml(text, display)
    from hexaflow.resolve import resolve_spec
    return resolve_spec(LoadedSpec(path, display, data, smap))


def is_flow(data: Any) -> bool:
    return isinstance(data, dict) and any(k in data for k in FLOW_MARKERS)


def _describe(path: tuple) -> str:
    return path_text(path)


def schema_problems(spec: LoadedSpec) -> list[Problem]:
    """Every schema violation, each placed on the offending key or value."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(flow_schema())
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(spec.data), key=lambda e: list(map(str, e.absolute_path))):
        problems.extend(_explain(spec, error))
    # One message per place is enough.
    seen, unique = set(), []
    for p in problems:
        if (p.line, p.col, p.message) not in seen:
            seen.add((p.line, p.col, p.message))
            unique.append(p)
    return unique


def _explain(spec: LoadedSpec, error: Any) -> list[Problem]:
    path = tuple(error.absolute_path)
    where = _describe(path)
    validator = error.validator
    if validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        instance = error.instance if isinstance(error.instance, dict) else {}
        out = []
        for name in instance:
            if name in allowed:
                continue
            guess = did_you_mean(name, allowed)
            hint = guess or (f"allowed here: {', '.join(allowed)}" if allowed else "")
            if guess and allowed:
                hint = f"{guess} (allowed here: {', '.join(allowed)})"
            out.append(spec.problem(path + (name,), f"unknown key {name!r} in {where}", hint,
                                    key=True))
        return out
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [spec.problem(path, f"{where} is missing the required key {missing!r}",
                             _required_hint(missing))]
    if validator in ("anyOf", "oneOf") and error.context:
        # The branch that got furthest explains the problem best.
        best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.message)))
        if len(best.absolute_path) > len(error.absolute_path):
            return _explain(spec, best)
        return [spec.problem(path, f"{where}: {_short(error.message)}",
                             error.schema.get("description", ""))]
    if validator == "pattern":
        return [spec.problem(path, f"{where}: {error.instance!r} is not allowed here",
                             _pattern_hint(error.validator_value))]
    if validator == "enum":
        return [spec.problem(path, f"{where}: {error.instance!r} is not one of "
                             f"{', '.join(map(str, error.validator_value))}",
                             did_you_mean(str(error.instance), map(str, error.validator_value)))]
    if validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return [spec.problem(path, f"{where} must be {_article(expected)}, "
                             f"not {type(error.instance).__name__}",
                             error.schema.get("description", "")[:160])]
    return [spec.problem(path, f"{where}: {_short(error.message)}")]


def _short(message: str) -> str:
    return message if len(message) < 160 else message[:157] + "..."


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _pattern_hint(pattern: str) -> str:
    if pattern.startswith("^[a-z]"):
        return "use a lowercase identifier: letters, digits and _ (e.g. sales_order)"
    return f"must match {pattern}"


def _required_hint(name: str) -> str:
    return {
        "flow": "add `flow: <name>` at the top, e.g. flow: orders",
        "source": "add a `source:` with connector and resource",
        "routes": "add `routes:` with at least one route",
        "connector": "name a connector, e.g. connector: file",
        "resource": "name the resource to read, e.g. resource: orders",
        "document": "name the document kind to write, e.g. document: voucher",
        "name": "give it a name, e.g. name: sales_order",
        "fields": "add the payload under `fields:`",
        "key": "add the document code template, e.g. key: \"DH_<<order.id>>\"",
        "target": "add `target: {connector: ..., document: ...}`",
    }.get(name, "")
