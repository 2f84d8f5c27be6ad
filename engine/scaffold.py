"""``hexaflow init DIR``: a project folder for one tenant, valid and tested as written.

It copies the default flows, their tables and test fixtures from the installed package
(``hexaflow.mappings``), points each flow's first line at the flow schema written next to them,
and adds what a project needs around them: ``.env.example`` (every variable the engine and the
flows' connectors read, values empty), a CI workflow, a pre-commit configuration, a
``.gitignore`` and a README. See docs/init-and-explain.md.

Everything is derived from the installed package and the connectors' declarations
(``Connector.config_vars``), so the engine names no system of its own.
"""
from __future__ import annotations

import os
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, TextIO

from hexaflow.errors import ScaffoldError
from hexaflow.connector import ConfigVar
from hexaflow.registry import get_connector
from hexaflow.spec import is_flow, schema_text
from hexaflow.yamlload import SpecSyntaxError, parse_yaml

EXIT_OK, EXIT_REFUSED = 0, 1
SCHEMA_FILE = ".hexaflow/flow.schema.json"
SCHEMA_LINE = "# yaml-language-server: $schema="
SKIPPED_NAMES = ("__init__.py", "__pycache__")

# The engine's own variables (docs/cli.md).
ENGINE_VARS = (
    ConfigVar("HEXAFLOW_STATE", "the state store: a file path or sqlite:///path",
              default="./.hexaflow/state.db"),
    ConfigVar("HEXAFLOW_TENANT", "the tenant id: one shop and its accounting company",
              default="default"),
    ConfigVar("HEXAFLOW_SETTLE_SECONDS", "how long a run waits for asynchronous results at "
              "its end", default="5"),
)


@dataclass
class Scaffold:
    """What ``init`` wrote."""
    target: Path
    written: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


@dataclass
class _Flow:
    path: str                 # relative, POSIX
    data: dict[str, Any]


# --------------------------------------------------------------------------- the packaged files
def packaged_files(package: str = "hexaflow.mappings") -> Iterator[tuple[str, bytes]]:
    """(relative POSIX path, content) of every data file of the default mappings."""
    def walk(node: Any, prefix: PurePosixPath) -> Iterator[tuple[str, bytes]]:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name in SKIPPED_NAMES or child.name.startswith(".") \
                    or child.name.endswith((".pyc", ".py")):
                continue
            if child.is_dir():
                yield from walk(child, prefix / child.name)
            else:
                yield str(prefix / child.name), child.read_bytes()
    yield from walk(resources.files(package), PurePosixPath())


def _parse_flow(path: str, content: bytes) -> dict[str, Any] | None:
    if not path.endswith((".yaml", ".yml")):
        return None
    try:
        data, _ = parse_yaml(content.decode("utf-8"), path)
    except (SpecSyntaxError, UnicodeDecodeError):
        return None
    return data if is_flow(data) else None


def with_schema_line(text: str, schema: str) -> str:
    """The flow text with its first line pointing editors at ``schema``."""
    line = f"{SCHEMA_LINE}{schema}"
    first, sep, rest = text.partition("\n")
    if first.startswith("# yaml-language-server:"):
        return line + sep + rest
    return line + "\n" + text


def _relative(target: str, start: str) -> str:
    return Path(os.path.relpath(target, PurePosixPath(start).parent.as_posix() or ".")).as_posix()


# --------------------------------------------------------------------------- generated files
def _connectors_used(flows: Iterable[_Flow]) -> dict[str, list[str]]:
    """connector name → the flows that use it (as source or target), in first-use order."""
    used: dict[str, list[str]] = {}

    def add(name: Any, flow: str) -> None:
        if isinstance(name, str) and flow not in used.setdefault(name, []):
            used[name].append(flow)

    for flow in flows:
        add((flow.data.get("source") or {}).get("connector"), flow.path)
        for route in flow.data.get("routes") or []:
            if not isinstance(route, dict):
                continue
            add((route.get("target") or {}).get("connector"), flow.path)
            for ens in route.get("ensure") or []:
                if isinstance(ens, dict):
                    add((ens.get("target") or {}).get("connector"), flow.path)
    return used


def _var_lines(var: ConfigVar) -> list[str]:
    notes = []
    if var.required:
        notes.append("required")
    if var.secret:
        notes.append("secret")
    if var.default is not None:
        notes.append(f"default: {var.default}")
    text = f"{var.name}: {var.description}" + (f" ({', '.join(notes)})" if notes else "")
    lines = textwrap.wrap(text, 96, initial_indent="# ", subsequent_indent="#   ",
                          break_long_words=False, break_on_hyphens=False)
    # An empty value is not the default for every variable: optional ones stay commented out.
    lines.append(f"{var.name}=" if var.required else f"# {var.name}=")
    return lines


def env_example(flows: list[_Flow]) -> str:
    out = [
        "# The variables hexaflow reads (secrets come only from here, never from flow files).",
        "# Copy this file to .env, fill in the values, and load it before running hexaflow, e.g.",
        "#   set -a; . ./.env; set +a",
        "# or set them as secrets of your CI or scheduler. .env holds secrets: never commit it.",
        "# Required values are empty below; optional ones are commented out with their default.",
        "",
        "# -- hexaflow",
    ]
    for var in ENGINE_VARS:
        out += _var_lines(var)
    for name, users in _connectors_used(flows).items():
        cls = get_connector(name)
        variables = list(getattr(cls, "config_vars", ()) or ()) if cls else []
        if not variables:
            continue
        out += ["", f"# -- connector {name} (used by {', '.join(users)})"]
        seen = {v.name for v in ENGINE_VARS}
        for var in variables:
            if var.name not in seen:
                seen.add(var.name)
                out += _var_lines(var)
    return "\n".join(out) + "\n"


def ci_workflow(version: str) -> str:
    return f"""\
# Checks the flows on every push and pull request: `hexaflow validate` (schema, expressions,
# names, lookup tables, route coverage) and `hexaflow test` (the tests: cases of each flow).
# Neither needs credentials or network. Pin the hexaflow version you run in production.
name: hexaflow
on:
  push:
  pull_request:
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install hexaflow
        run: pip install hexaflow=={version}
      - name: Validate the flows
        run: hexaflow validate .
      - name: Run the flows' tests
        run: hexaflow test .
"""


PRE_COMMIT = """\
# pre-commit (https://pre-commit.com): `pip install pre-commit && pre-commit install`; then every
# commit that changes a flow, a table or a fixture first runs `hexaflow validate .` and
# `hexaflow test .` with the hexaflow installed here. The whole folder is checked, not only the
# changed files: a changed table or fixture can break a flow that did not change.
repos:
  - repo: local
    hooks:
      - id: hexaflow-validate
        name: hexaflow validate
        entry: hexaflow validate .
        language: system
        files: \\.(ya?ml|csv|jsonl?)$
        pass_filenames: false
      - id: hexaflow-test
        name: hexaflow test
        entry: hexaflow test .
        language: system
        files: \\.(ya?ml|csv|jsonl?)$
        pass_filenames: false
# To let pre-commit install hexaflow itself, use the hooks the hexaflow repository publishes
# (its .pre-commit-hooks.yaml) instead of the local ones above:
#  - repo: <the hexaflow repository URL>
#    rev: <a hexaflow release tag>
#    hooks:
#      - id: hexaflow-validate
#      - id: hexaflow-test
"""

GITIGNORE = """\
# secrets: copy .env.example to .env and never commit .env
.env
# the state store (cursors, ledger, dead letters) is local state, not source; keep the schema
.hexaflow/*
!.hexaflow/flow.schema.json
# what the file connector writes
out/
"""


def _first_sentence(text: Any) -> str:
    words = " ".join(str(text or "").split())
    head = words.partition(". ")[0].rstrip(".")
    return head + "." if head else ""


def _table_summary(path: str, content: bytes) -> str:
    """A YAML table's first sentence of its leading comment; a CSV table's columns."""
    lines = content.decode("utf-8", "replace").splitlines()
    if path.endswith(".csv"):
        return f"columns {lines[0].strip()}" if lines else "an empty CSV table"
    words: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped.startswith("#") or (words and stripped == "#"):
            break
        words.append(stripped.lstrip("#").strip())
    return _first_sentence(" ".join(words))


def readme(name: str, version: str, flows: list[_Flow], tables: dict[str, list[str]],
           summaries: dict[str, str]) -> str:
    first = flows[0].path if flows else "FLOW.yaml"
    out = [f"# {name}", "",
           f"hexaflow flows for one shop, made by `hexaflow init` (hexaflow {version}). The flows",
           "and tables are yours to change; `hexaflow validate .` and `hexaflow test .` check",
           "them (locally, in pre-commit and in CI).", "",
           "## What is here", "",
           "| file | what it is |", "|---|---|"]
    for flow in flows:
        out.append(f"| `{flow.path}` | flow `{flow.data.get('flow')}`: "
                   f"{_first_sentence(flow.data.get('description')) or 'a sync job'} |")
    for table, users in tables.items():
        summary = summaries.get(table) or "a table"
        out.append(f"| `{table}` | table read by {', '.join(f'`{u}`' for u in users)}: {summary} |")
    out += [
        "| `fixtures/` | records and expected payloads for the flows' `tests:` cases |",
        "| `.env.example` | every variable hexaflow reads, values empty: copy to `.env` |",
        "| `.hexaflow/flow.schema.json` | the flow schema; each flow's first line points editors at it |",
        "| `.github/workflows/hexaflow.yml` | CI: validate and test on every push |",
        "| `.pre-commit-config.yaml` | validate and test before each commit |",
        "", "## Set up", "",
        "1. Fill in the tables above (start with the settings), each value is explained in its file.",
        "   The test cases use the default rows: when you change a table, run `hexaflow test .`",
        "   and update the expected payloads under `fixtures/expected/` that change on purpose.",
        "2. `cp .env.example .env` and fill in the credentials; never commit `.env`.",
        "3. Check: `hexaflow validate . && hexaflow test .`",
        f"4. See what would be sent, without writing anything: `hexaflow run {first} --dry-run`",
        f"5. Run: `hexaflow run {first}` (or `hexaflow serve *.yaml` for webhooks and a schedule).",
        "", "## When a document looks wrong", "",
        f"- `hexaflow explain {first} --id ID` (or `--record FILE`): every value, each condition",
        "  and why it holds, the document codes, what the ledger decides, the exact payloads;",
        "  it writes nothing.",
        "- `hexaflow status`, `hexaflow trace ID`, `hexaflow dlq list`: what was written, what failed.",
        "",
        "## Editor", "",
        "Editors with yaml-language-server (VS Code's YAML extension, Neovim, Helix, ...) read the",
        "first line of each flow and complete keys and show descriptions from the schema.",
        "After upgrading hexaflow: `hexaflow schema > .hexaflow/flow.schema.json`.",
    ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- writing
def plan_files(name: str) -> tuple[dict[str, bytes], list[str], list[str]]:
    """(relative path → content, flow paths, table paths) of a new project."""
    version = _version()
    files: dict[str, bytes] = {}
    flows: list[_Flow] = []
    packaged = dict(packaged_files())
    for path, content in packaged.items():
        data = _parse_flow(path, content)
        if data is not None:
            flows.append(_Flow(path, data))
            text = with_schema_line(content.decode("utf-8"), _relative(SCHEMA_FILE, path))
            files[path] = text.encode("utf-8")
        else:
            files[path] = content
    tables: dict[str, list[str]] = {}
    for flow in flows:
        base = PurePosixPath(flow.path).parent
        for spec in (flow.data.get("lookups") or {}).values():
            # A connector's lookup is read from it each run; its sample file is the table here.
            file = spec if isinstance(spec, str) else (spec or {}).get("file") or (spec or {}).get("sample")
            if isinstance(file, str):
                rel = os.path.normpath((base / file).as_posix()).replace(os.sep, "/")
                users = tables.setdefault(rel, [])
                if flow.path not in users:
                    users.append(flow.path)
    summaries = {t: _table_summary(t, packaged[t]) for t in tables if t in packaged}
    files[SCHEMA_FILE] = schema_text().encode("utf-8")
    files[".env.example"] = env_example(flows).encode("utf-8")
    files[".github/workflows/hexaflow.yml"] = ci_workflow(version).encode("utf-8")
    files[".pre-commit-config.yaml"] = PRE_COMMIT.encode("utf-8")
    files[".gitignore"] = GITIGNORE.encode("utf-8")
    files["README.md"] = readme(name, version, flows, tables, summaries).encode("utf-8")
    return files, [f.path for f in flows], list(tables)


def _version() -> str:
    try:
        return metadata.version("hexaflow")
    except metadata.PackageNotFoundError:     # pragma: no cover - running from a checkout
        return "0"


def scaffold(target: Path, force: bool = False) -> Scaffold:
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a folder")
    if target.exists() and any(target.iterdir()) and not force:
        raise ScaffoldError(f"{target} is not empty; choose a new folder, or add --force to "
                            f"write into it (files with the same names are replaced)")
    name = target.resolve().name or "hexaflow project"
    files, flows, tables = plan_files(name)
    result = Scaffold(target, flows=flows, tables=tables)
    for rel in files:
        path = target / rel
        if path.exists() and not path.is_file():
            raise ScaffoldError(f"{path} exists and is not a file")
    for rel, content in files.items():
        path = target / rel
        if path.exists():
            result.replaced.append(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        result.written.append(rel)
    return result


TENANT_YAML = """\
# How hexaflow reaches this shop's systems (docs/tenants.md). This file is committed: it holds
# no secret. The tenant is named by its folder.
description: ""
# The tenant's own non-secret settings for its connectors (.env.example lists every name);
# codes are text: write them in quotes.
environment: {}
{settings}
# Where the secrets come from (tokens, access codes), never a committed file:
# a KEY=VALUE file (mode 600), absolute or relative to this folder ...
secrets: ../.secrets/{name}.env
# ... or the process environment, with a prefix (SHOP_A_<NAME> becomes <NAME>):
# secrets:
#   env_prefix: SHOP_A_
"""


def _tenant_yaml(name: str) -> str:
    """tenant.yaml for a new tenant: the required settings its connectors declare, commented."""
    from hexaflow.tenants import declared_variables
    wanted = [v for v in declared_variables().values() if v.required and not v.secret]
    settings = "\n".join(f'#  {v.name}: ""' for v in wanted)
    return TENANT_YAML.replace("{settings}", settings).replace("{name}", name)


def add_tenant(base: Path, name: str, force: bool = False) -> Scaffold:
    """A new tenant folder ``base/name`` with a tenant.yaml; ScaffoldError for a bad name."""
    from hexaflow.tenants import NAME_RULE, TENANT_FILE
    if NAME_RULE.fullmatch(name) is None or name.startswith((".", "_")):
        raise ScaffoldError(f"{name!r} is not a tenant name: letters, digits, '-', '_' and '.', "
                            f"at most 63, starting with a letter or digit (e.g. shop-a)")
    result = scaffold(base / name, force)
    (base / name / TENANT_FILE).write_text(_tenant_yaml(name), encoding="utf-8")
    result.written.append(TENANT_FILE)
    return result


def init_command(directory: str, *, force: bool = False, out: TextIO | None = None,
                 err: TextIO | None = None, tenants: str | None = None) -> int:
    """``hexaflow init DIRECTORY``, or with ``tenants`` the tenant DIRECTORY of that folder."""
    out = out or sys.stdout
    err = err or sys.stderr
    target = Path(tenants) / directory if tenants else Path(directory)
    try:
        result = add_tenant(Path(tenants), directory, force) if tenants else scaffold(target, force)
    except (ScaffoldError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_REFUSED
    replaced = set(result.replaced)
    print(f"wrote {len(result.written)} files in {target}:", file=out)
    for rel in sorted(result.written):
        print(f"  {rel}" + ("  (replaced)" if rel in replaced else ""), file=out)
    first = result.flows[0] if result.flows else "FLOW.yaml"
    settings = [t for t in result.tables if t.endswith((".yaml", ".yml", ".csv"))]
    # Steps are commands to paste into a shell: the folder may hold spaces, `;`, `$(...)`.
    steps = [
        f"cd {shlex.quote(str(target))}",
        f"fill in the tables: {', '.join(settings)}" if settings else "fill in the tables",
        (f"fill in tenant.yaml and its secrets file ({tenants}/.secrets/{directory}.env, mode "
         f"600; never commit it)" if tenants else
         "cp .env.example .env, fill in the credentials (never commit .env), and load it"),
        "hexaflow validate . && hexaflow test .",
        f"hexaflow run {first} --dry-run      (what would be sent; writes nothing)",
        f"hexaflow explain {first} --id ID    (why a record gives its documents)",
    ]
    print("\nnext steps:", file=out)
    for n, step in enumerate(steps, 1):
        print(f"  {n}. {step}", file=out)
    return EXIT_OK
