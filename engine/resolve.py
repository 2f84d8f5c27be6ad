"""A flow's reusable pieces — ``definitions:``, ``use:`` and ``include:`` — resolved into a
plain flow, with the position of every value kept (docs/factoring.md).

- ``definitions: {name: mapping}`` at the top of a flow (or of an included file) names a
  piece: a whole document (target, key, ensure, fields...), an ensure block, a block of fields.
- ``{use: name, ...}`` anywhere under ``routes:`` or ``let:`` (and inside definitions) stands for
  that piece, deep-merged with the keys written beside ``use``: mappings merge key by key
  (the definition's order first, new keys after), anything else is replaced, and a key set to
  null is removed (write ``{const: null}`` for a null value).
- ``include: [shared/customer.yaml]`` reads the definitions and lets of other files. Their
  names are relative to the flow file and pass the path guard (hexaflow.paths): no escape from
  the project folder, regular files only. An included file holds only ``include``,
  ``definitions`` and ``let``; its lets come before the flow's own, in include order.

The result is an ordinary LoadedSpec: validate, run, explain and ``hexaflow test`` compile it
like any flow. A value that came from a definition or an included file keeps its own
``file:line:col`` and the chain of uses that brought it (``Position.via``), so a problem in it
reads ``orders.yaml:210:5: route receipt (use: money_document) → shared/customer.yaml:7:9: ...``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hexaflow.errors import PathError, SpecSyntaxError
from hexaflow.limits import MAX_VALUES
from hexaflow.paths import inside_project
from hexaflow.problems import ERROR, Problem, did_you_mean
from hexaflow.spec import LoadedSpec
from hexaflow.yamlload import Position, SourceMap, Via, parse_yaml, read_text

DEFINITIONS, INCLUDE, USE = "definitions", "include", "use"
INCLUDED_KEYS = (INCLUDE, DEFINITIONS, "let")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class _Node:
    """A value with its position: a scalar, a mapping (key → (key position, node)) or a list."""
    pos: Position
    value: Any = None
    items: dict[Any, tuple[Position, _Node]] | None = None
    elements: list[_Node] | None = None

    def is_null(self) -> bool:
        return self.value is None and self.items is None and self.elements is None


@dataclass(frozen=True)
class _Source:
    display: str          # "" for the flow file itself
    smap: SourceMap


@dataclass(frozen=True)
class _At:
    """Where a value is read: its file, its path there, the uses that led to it, and how a
    ``use`` found there is named in messages ("route receipt", "definition money")."""
    source: _Source
    path: tuple
    via: tuple[Via, ...]
    context: str
    uses: tuple[str, ...] = ()     # the definitions being expanded here, outermost first

    def __truediv__(self, step: Any) -> _At:
        return replace(self, path=self.path + (step,))


@dataclass
class _Definition:
    value: Any
    at: _At


@dataclass
class _Let:
    name: Any
    value: Any
    at: _At


class _TooLarge(Exception):
    pass


@dataclass
class _Resolver:
    spec: LoadedSpec
    problems: list[Problem] = field(default_factory=list)
    definitions: dict[str, _Definition] = field(default_factory=dict)
    lets: list[_Let] = field(default_factory=list)
    included: list[Path] = field(default_factory=list)
    count: int = 0

    # -- positions and problems -----------------------------------------------------------
    def pos(self, at: _At, key: bool = False) -> Position:
        table = at.source.smap.keys if key else at.source.smap.values
        found = table.get(at.path) or at.source.smap.at(at.path, key)
        return replace(found, file=at.source.display or found.file, via=at.via)

    def error(self, at: _At, message: str, hint: str = "", *, key: bool = False) -> None:
        smap = SourceMap(self.spec.display, {(): self.pos(at, key)})
        here = LoadedSpec(self.spec.path, self.spec.display, None, smap)
        self.problems.append(here.problem((), message, hint))

    def step(self, at: _At, what: str) -> tuple[Via, ...]:
        pos = self.pos(at)
        return at.via + (Via(at.source.display or self.spec.display, pos.line, pos.col, what),)

    # -- includes and definitions ---------------------------------------------------------
    def include(self, data: dict[str, Any], at: _At, chain: tuple[Path, ...]) -> None:
        raw = data.get(INCLUDE)
        if raw is None:
            return
        names = [(at / INCLUDE, raw)] if isinstance(raw, str) else \
            [(at / INCLUDE / i, name) for i, name in enumerate(raw)] if isinstance(raw, list) else []
        if not names:
            self.error(at / INCLUDE, "include takes a file name or a list of them",
                       "e.g. include: [shared/customer.yaml]")
        for where, name in names:
            if not isinstance(name, str):
                self.error(where, "an included file is named by text", "e.g. shared/customer.yaml")
                continue
            self.include_file(name, where, chain)

    def include_file(self, name: str, where: _At, chain: tuple[Path, ...]) -> None:
        try:
            path = inside_project(self.spec.path.parent, name, "included file")
        except PathError as exc:
            self.error(where, exc.message, exc.hint)
            return
        if not path.is_file():
            self.error(where, f"included file not found: {name}",
                       "names are relative to the flow file's folder")
            return
        real = path.resolve()
        if real in chain:
            cycle = " → ".join(p.name for p in chain[chain.index(real):] + (real,))
            self.error(where, f"files include each other in a cycle: {cycle}",
                       "move what both need into a third file that both include")
            return
        if real in self.included or real == self.spec.path.resolve():
            return              # included once already (by two files): its names are known
        self.included.append(real)
        display = str(Path(self.spec.display).parent / name)
        try:
            data, smap = parse_yaml(read_text(path, display), display)
        except SpecSyntaxError as exc:
            pos = Position(exc.line, exc.col, file=exc.file, via=self.step(where, f"include {name}"))
            self.problems.append(LoadedSpec(self.spec.path, self.spec.display, None,
                                            SourceMap(display, {(): pos})).problem((), exc.message, exc.hint))
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.error(where, f"cannot read included file {name}: {exc}", "save it as UTF-8 text")
            return
        inner = _At(_Source(display, smap), (), self.step(where, f"include {name}"), f"included {name}")
        if not isinstance(data, dict):
            self.error(inner, "an included file must be a mapping of include, definitions and let",
                       "e.g. definitions: {customer: {...}}")
            return
        for key in data:
            if key not in INCLUDED_KEYS:
                self.error(inner / key, f"unknown key {key!r} in an included file",
                           did_you_mean(str(key), INCLUDED_KEYS) or
                           f"an included file holds only {', '.join(INCLUDED_KEYS)}", key=True)
        self.include(data, inner, chain + (real,))
        self.collect(data, inner)

    def collect(self, data: dict[str, Any], at: _At) -> None:
        """The definitions and lets of one file (the flow's lets are kept where they are)."""
        raw = data.get(DEFINITIONS)
        if raw is not None and not isinstance(raw, dict):
            self.error(at / DEFINITIONS, "definitions must be a mapping of names to pieces",
                       "e.g. definitions: {sales_document: {target: ..., key: ..., fields: ...}}")
        for name, value in (raw if isinstance(raw, dict) else {}).items():
            where = at / DEFINITIONS / name
            if not isinstance(name, str) or not NAME.match(name):
                self.error(where, f"definition name {name!r} is not a lowercase identifier",
                           "use letters, digits and _, e.g. sales_document", key=True)
                continue
            if name in self.definitions:
                first = self.pos(self.definitions[name].at)
                self.error(where, f"definition {name!r} is defined twice (first at "
                           f"{first.file or self.spec.display}:{first.line})",
                           "rename one of them", key=True)
                continue
            self.definitions[name] = _Definition(value, replace(where, via=(), context=f"definition {name}"))
        lets = data.get("let")
        if at.source.display and lets is not None:      # an included file's lets
            if not isinstance(lets, dict):
                self.error(at / "let", "let must be a mapping of names to expressions")
                return
            self.lets += [_Let(name, value, at / "let" / name) for name, value in lets.items()]

    # -- copying, with uses resolved -------------------------------------------------------
    def copy(self, value: Any, at: _At, uses: bool = True) -> _Node:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooLarge
        if isinstance(value, dict):
            if uses and USE in value:
                return self.use(value, at)
            items = {key: (self.pos(at / key, key=True),
                           self.copy(item, at / key, uses and key != "const"))
                     for key, item in value.items()}
            return _Node(self.pos(at), items=items)
        if isinstance(value, list):
            return _Node(self.pos(at), elements=[self.copy(item, at / i, uses)
                                                 for i, item in enumerate(value)])
        return _Node(self.pos(at), value=value)

    def use(self, value: dict[str, Any], at: _At) -> _Node:
        name = value[USE]
        rest = self.copy_items(value, at)
        if not isinstance(name, str):
            self.error(at / USE, "use takes the name of a definition", "e.g. use: sales_document")
            return rest
        definition = self.definitions.get(name)
        if definition is None:
            known = sorted(self.definitions)
            self.error(at / USE, f"unknown definition {name!r}",
                       did_you_mean(name, known) or (f"definitions: {', '.join(known)}" if known
                                                     else "add it under `definitions:`, or include "
                                                     "the file that defines it"))
            return rest
        if name in at.uses:
            cycle = " → ".join(at.uses[at.uses.index(name):] + (name,))
            self.error(at / USE, f"definitions use each other in a cycle: {cycle}",
                       "a definition cannot use itself, directly or through another")
            return rest
        if not isinstance(definition.value, dict):
            kind = "a list" if isinstance(definition.value, list) else \
                f"a {type(definition.value).__name__} value"
            self.error(at / USE, f"definition {name!r} is {kind}; use takes a mapping "
                       "(a document, an ensure block, a block of fields)",
                       "make the definition a mapping, or write the value where it is needed")
            return rest
        wrong = _wrong_kind(at.path, definition.value)
        if wrong:
            self.error(at / USE, f"definition {name!r} {wrong[0]}", wrong[1])
            return rest
        inner = replace(definition.at, via=self.step(at / USE, f"{at.context} (use: {name})"),
                        uses=at.uses + (name,))
        return _merge(self.copy(definition.value, inner), rest)

    def copy_items(self, value: dict[str, Any], at: _At) -> _Node:
        """The keys beside ``use``, each resolved."""
        items = {key: (self.pos(at / key, key=True), self.copy(item, at / key, key != "const"))
                 for key, item in value.items() if key != USE}
        return _Node(self.pos(at), items=items)

    # -- the flow ----------------------------------------------------------------------------
    def flow(self, data: dict[str, Any]) -> _Node:
        top = _At(_Source("", self.spec.smap), (), (), "flow")
        self.include(data, top, (self.spec.path.resolve(),))
        self.collect(data, top)
        items: dict[Any, tuple[Position, _Node]] = {}
        if self.lets and "let" not in data:
            items["let"] = (self.pos(top / INCLUDE, key=True), _Node(self.pos(top / INCLUDE), items={}))
        for key, value in data.items():
            if key in (INCLUDE, DEFINITIONS):
                continue
            node = self.section(key, value, top / key)
            items[key] = (self.pos(top / key, key=True), node)
        if "let" in items and self.lets:
            own = items["let"][1]
            lets: dict[Any, tuple[Position, _Node]] = {}
            for let in self.lets:
                if let.name in lets or let.name in (own.items or {}):
                    first = self.pos(let.at, key=True)
                    where = let.at if let.name in lets else top / "let" / let.name
                    self.error(where, f"let {let.name!r} is defined twice (also at "
                               f"{first.file}:{first.line})", "rename one of them", key=True)
                    continue
                lets[let.name] = (self.pos(let.at, key=True),
                                  self.copy(let.value, replace(let.at, context=f"let {let.name}")))
            lets.update(own.items or {})
            items["let"] = (items["let"][0], _Node(own.pos, items=lets))
        return _Node(self.pos(top), items=items)

    def section(self, key: str, value: Any, at: _At) -> _Node:
        if key == "routes" and isinstance(value, list):
            elements = []
            for i, route in enumerate(value):
                name = route.get("name") if isinstance(route, dict) else None
                context = f"route {name}" if isinstance(name, str) else f"routes[{i}]"
                elements.append(self.copy(route, replace(at / i, context=context)))
            return _Node(self.pos(at), elements=elements)
        return self.copy(value, replace(at, context=key), uses=key == "let")


def _wrong_kind(path: tuple, value: dict[str, Any]) -> tuple[str, str] | None:
    """(what is wrong, hint) when a definition is used where its kind does not fit: a document
    (with target or ensure) among fields, or a block of fields as a document or ensure."""
    if "fields" in path:
        document = sorted(k for k in ("target", "ensure") if k in value)
        if document:
            return (f"is a document (it has {' and '.join(document)}), used here as fields",
                    "use a definition that holds only fields, e.g. the document's `fields:` "
                    "as a definition of its own")
        return None
    where = "route" if len(path) == 2 else "ensure" if path[-2:-1] == ("ensure",) else None
    if where is None or path[:1] != ("routes",) and where == "route":
        return None
    from hexaflow.spec import flow_schema
    allowed = set(flow_schema()["$defs"][where]["properties"])
    stray = sorted(str(k) for k in value if k not in allowed)
    if stray and not allowed & set(value):
        return (f"is a block of fields ({', '.join(stray[:3])}...), used here as a {where}",
                f"use it under fields: (fields: {{use: ...}}), or give the {where} "
                f"definition target, key and fields")
    return None


def _merge(base: _Node, over: _Node) -> _Node:
    """``over`` deep-merged onto ``base``: mappings key by key, a null removes, else replaced."""
    if base.items is None or over.items is None:
        return over
    items = dict(base.items)
    for key, (key_pos, node) in over.items.items():
        if node.is_null():
            items.pop(key, None)
        elif key in items:
            items[key] = (items[key][0], _merge(items[key][1], node))
        else:
            items[key] = (key_pos, node)
    return _Node(over.pos, items=items)


def _plain(node: _Node, path: tuple, smap: SourceMap) -> Any:
    smap.values[path] = node.pos
    if node.items is not None:
        out = {}
        for key, (key_pos, item) in node.items.items():
            smap.keys[path + (key,)] = key_pos
            out[key] = _plain(item, path + (key,), smap)
        return out
    if node.elements is not None:
        return [_plain(item, path + (i,), smap) for i, item in enumerate(node.elements)]
    return node.value


def _uses_anything(data: dict[str, Any]) -> bool:
    if INCLUDE in data or DEFINITIONS in data:
        return True
    stack: list[Any] = [data.get("routes"), data.get("let")]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if USE in value:
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def resolve_spec(spec: LoadedSpec) -> LoadedSpec:
    """``spec`` with its definitions, uses and includes resolved (itself when it has none);
    what went wrong is in ``problems`` of the result."""
    if not isinstance(spec.data, dict) or not _uses_anything(spec.data):
        return spec
    resolver = _Resolver(spec)
    try:
        root = resolver.flow(spec.data)
    except _TooLarge:
        return replace(spec, problems=[Problem(spec.display, 1, 1,
                       f"the flow holds more than {MAX_VALUES:,} values once its definitions "
                       f"are used", "a definition must not use others many times over")],
                       included=resolver.included)
    smap = SourceMap(spec.display)
    data = _plain(root, (), smap)
    return LoadedSpec(spec.path, spec.display, data, smap, resolver.problems, resolver.included)


def has_errors(spec: LoadedSpec) -> bool:
    return any(p.severity == ERROR for p in spec.problems)
