"""YAML loading that remembers where every value came from.

Errors in a flow must point at ``file:line:col``, so the loader returns, beside the plain data,
the position of every value and every mapping key, addressed by its path in the document
(a tuple of keys and list indices). It also refuses duplicate keys (PyYAML silently keeps the
last one) and reads decimals as ``Decimal`` so that money in specs and fixtures stays exact.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from hexaflow.errors import SpecSyntaxError
from hexaflow.limits import MAX_FILE_BYTES, MAX_NESTING, MAX_VALUES

Path_ = tuple  # a path into the document: keys and list indices


@dataclass(frozen=True)
class Via:
    """One step by which a value reached the flow: ``what`` (e.g. "route receipt (use:
    money_document)") written at ``file:line:col`` (see hexaflow.resolve)."""
    file: str
    line: int
    col: int
    what: str


@dataclass(frozen=True)
class Position:
    line: int      # 1-based
    col: int       # 1-based
    quoted: bool = False   # scalar written in quotes (column of its text is col + 1)
    file: str = ""         # the file it is written in, when not the flow file (an include)
    via: tuple[Via, ...] = ()   # the uses that brought it here, outermost first


@dataclass
class SourceMap:
    file: str
    values: dict[tuple, Position] = field(default_factory=dict)
    keys: dict[tuple, Position] = field(default_factory=dict)

    def at(self, path: tuple, key: bool = False) -> Position:
        """Position of the value (or key) at ``path``; falls back to the nearest parent."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Position(1, 1))

    def where(self, path: tuple, key: bool = False) -> str:
        pos = self.at(path, key)
        return f"{pos.file or self.file}:{pos.line}:{pos.col}"


# libyaml (bundled with PyYAML's wheels) parses ~10x faster than the pure-Python loader;
# both give nodes with the same marks.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    pass


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node).replace("_", "")
    lowered = text.lower()
    if lowered in (".inf", "+.inf", "-.inf", ".nan"):
        return float(lowered.replace(".", ""))
    return Decimal(text)


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def _convert(loader: _Loader, node: yaml.Node, path: tuple, smap: SourceMap) -> Any:
    _check_size(node, path, smap)
    smap.values[path] = Position(node.start_mark.line + 1, node.start_mark.column + 1,
                                 isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'))
    if isinstance(node, yaml.MappingNode):
        explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        loader.flatten_mapping(node)   # YAML merge keys (<<: *anchor) come first, then these
        result: dict[Any, Any] = {}
        merged: set[Any] = set()
        for key_node, value_node in node.value:
            if id(key_node) not in explicit:
                key = loader.construct_object(key_node, deep=True)
                merged.add(key)
                result[key] = _convert(loader, value_node, path + (key,), smap)
                smap.keys[path + (key,)] = Position(key_node.start_mark.line + 1,
                                                    key_node.start_mark.column + 1)
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, bool)) and key is not None:
                raise SpecSyntaxError(smap.file, key_node.start_mark.line + 1,
                                      key_node.start_mark.column + 1,
                                      "mapping keys must be plain text",
                                      "write the key as text, in quotes if it looks like a list or mapping")
            if key in result and key not in merged:
                first = smap.keys[path + (key,)]
                raise SpecSyntaxError(smap.file, key_node.start_mark.line + 1,
                                      key_node.start_mark.column + 1,
                                      f"duplicate key {key!r} (first defined at line {first.line})",
                                      "remove one of them; YAML keeps only the last")
            merged.discard(key)     # an explicit key overrides a merged one, once
            smap.keys[path + (key,)] = Position(key_node.start_mark.line + 1,
                                                key_node.start_mark.column + 1)
            result[key] = _convert(loader, value_node, path + (key,), smap)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), smap) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _check_size(node: yaml.Node, path: tuple, smap: SourceMap) -> None:
    """Refuse a document that expands past the limits: every value gets a path in the source
    map, so an alias used many times (a "billion laughs" bomb) counts once per use, and one
    that refers to the value holding it (``&a [*a]``) nests for ever."""
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if len(path) > MAX_NESTING:
        raise SpecSyntaxError(smap.file, line, col,
                              f"values nested more than {MAX_NESTING} levels deep",
                              "flatten the structure; an alias must not refer to the value "
                              "that holds it (as in `a: &a [*a]`)")
    if len(smap.values) >= MAX_VALUES:
        raise SpecSyntaxError(smap.file, line, col,
                              f"the document holds more than {MAX_VALUES:,} values once its "
                              f"aliases are expanded",
                              "use fewer aliases (*name) or merge keys (<<:); a table this "
                              "large belongs in a CSV file")


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document; return (data, source map). Raises SpecSyntaxError."""
    smap = SourceMap(file)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, smap
        return _convert(loader, node, (), smap), smap
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        hint = ""
        if "indentation" in problem or "mapping values are not allowed" in problem \
                or "expected <block end>" in problem:
            hint = ("check the indentation: nested keys must be indented more than their "
                    "parent, siblings equally")
        raise SpecSyntaxError(file, line, col, problem, hint) from None
    finally:
        loader.dispose()


def read_limited(path: Path, display: str) -> bytes:
    """The file's bytes, refused past MAX_FILE_BYTES without reading further (files such as
    /proc's say they are empty, so the size is counted, not asked). Raises OSError."""
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise SpecSyntaxError(display, 1, 1, f"the file is larger than "
                              f"{MAX_FILE_BYTES // (1024 * 1024)} MiB, the limit for flows and "
                              f"the files they name",
                              "split it; a flow, table or test file is never this large")
    return data


def read_text(path: Path, display: str) -> str:
    """``read_limited`` as UTF-8 text with universal newlines, as ``Path.read_text`` gives it.
    Raises OSError, UnicodeDecodeError (with the bytes read: its position is the file's)."""
    text = read_limited(path, display).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _json(text: str, display: str, line: int = 0) -> Any:
    """One JSON document; ``line``: its line in a JSONL file (0: a whole JSON file)."""
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise SpecSyntaxError(display, line or exc.lineno, exc.colno,
                              f"invalid JSON: {exc.msg}") from None
    except RecursionError:        # json nests one Python call per level
        raise SpecSyntaxError(display, line or 1, 1, "JSON nested too deeply",
                              "a record or table nests a few levels, not hundreds") from None


def read_data_file(path: Path, display: str | None = None) -> Any:
    """Load a YAML or JSON data file (fixtures, tables); decimals become Decimal."""
    display = display or str(path)
    try:
        text = read_text(path, display)
    except OSError as exc:
        raise SpecSyntaxError(display, 1, 1, f"cannot read file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpecSyntaxError(display, 1, 1, "the file is not UTF-8 text",
                              "save it as UTF-8") from None
    if path.suffix.lower() == ".json":
        return _json(text, display)
    if path.suffix.lower() == ".jsonl":
        return [_json(line, display, number) for number, line in enumerate(text.splitlines(), 1)
                if line.strip()]
    data, _ = parse_yaml(text, display)
    return data
