"""``hexaflow validate``: every check a flow can get without touching a real system.

1. YAML well-formed (file:line:col of the syntax error, duplicate keys refused).
2. The flow JSON Schema (unknown keys with did-you-mean, missing keys, wrong types).
3. Compilation: every JMESPath expression and template, every name they use, connectors,
   resources, documents, actions, fields a target forbids, lookup files.
4. Test cases: their input and expectation files exist.
5. Route coverage, when the flow declares ``coverage:`` (hexaflow.coverage).

The machinery (YAML, JSON Schema, Jinja, connectors) is imported when a file is validated, not
with this module: a file whose result is in the cache (hexaflow.cache) needs none of it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from hexaflow.problems import ERROR, Problem

if TYPE_CHECKING:
    from hexaflow.cache import ValidationCache
    from hexaflow.spec import LoadedSpec


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def failed(self, strict: bool = False) -> bool:
        return bool(self.errors()) or (strict and bool(self.problems)) or not self.flows


def find_flow_files(paths: Iterable[str], report: Report) -> list[Path]:
    return [path for path, _ in find_flows(paths, report)]


def find_flows(paths: Iterable[str], report: Report,
               cache: ValidationCache | None = None) -> list[tuple[Path, LoadedSpec | None]]:
    """The flow files given or found in folders, each with its parsed spec when it had to be
    parsed to tell a flow from a table (so that no file is parsed twice). A file whose content
    the cache knows is not parsed at all."""
    files: list[tuple[Path, LoadedSpec | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append((path, None))
        elif path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.suffix.lower() not in (".yaml", ".yml") or \
                        any(part.startswith(".") for part in candidate.relative_to(path).parts):
                    continue
                kind = cache.kind(candidate) if cache is not None else None
                if kind is not None:
                    if kind == "flow":
                        files.append((candidate, None))
                    continue
                from hexaflow.spec import is_flow, load_spec
                from hexaflow.yamlload import SpecSyntaxError
                try:
                    spec = load_spec(candidate)
                except SpecSyntaxError:
                    files.append((candidate, None))    # report its syntax error as a flow problem
                    continue
                if is_flow(spec.data):
                    files.append((candidate, spec))
                elif cache is not None:
                    cache.remember_table(candidate)
        else:
            report.problems.append(Problem(raw, 1, 1, "no such file or folder",
                                           "give flow files or folders that hold them"))
    return files


def validate_paths(paths: Iterable[str], cache: ValidationCache | None = None) -> Report:
    """Validate flow files and folders; with a ``cache``, files whose inputs did not change
    since they were last validated are not validated again."""
    report = Report()
    for path, spec in find_flows(paths, report, cache):
        report.flows.append(str(path))
        report.problems.extend(validate_file(path, spec, cache))
    if not report.flows and not report.problems:
        report.problems.append(Problem(", ".join(paths), 1, 1, "no flow files found",
                                       "a flow file is YAML with `flow:`, `source:` and `routes:`"))
    if cache is not None:
        cache.save()
    return report


def validate_file(path: Path, spec: LoadedSpec | None = None,
                  cache: ValidationCache | None = None) -> list[Problem]:
    """Every problem of one flow file; ``spec``: the file already parsed."""
    if cache is not None:
        known = cache.problems(path)
        if known is not None:
            return known
    from hexaflow.spec import load_spec
    from hexaflow.yamlload import SpecSyntaxError

    try:
        spec = spec or load_spec(path)
    except SpecSyntaxError as exc:
        problems = [Problem(exc.file, exc.line, exc.col, exc.message, exc.hint)]
        if cache is not None:
            cache.remember_flow(path, {}, problems)
        return problems
    if cache is None:
        return _check(path, spec)
    inputs = cache.digests(referenced_files(spec))   # before they are read, not after
    problems = _check(path, spec)
    cache.remember_flow(path, inputs, problems)
    return problems


def _check(path: Path, spec: LoadedSpec) -> list[Problem]:
    from hexaflow.plan import compile_plan

    if not isinstance(spec.data, dict):
        return [Problem(str(path), 1, 1, "a flow file must be a YAML mapping",
                        "start with `flow: <name>`")]
    plan, problems = compile_plan(spec)
    if plan is None:
        return problems
    problems += check_test_files(spec)
    from hexaflow.keyidentity import key_identity_problems
    problems += key_identity_problems(plan, spec)
    if "coverage" in spec.data:
        from hexaflow.coverage import check_coverage
        problems += check_coverage(plan, spec)
    return problems


def _test_file_refs(spec: LoadedSpec) -> list[tuple[tuple, object]]:
    """(where in the spec, file name) of every file a test case names."""
    tests = spec.data.get("tests") if isinstance(spec.data, dict) else None
    refs: list[tuple[tuple, object]] = []
    for i, case in enumerate(tests if isinstance(tests, list) else []):
        if not isinstance(case, dict):
            continue
        expect = case.get("expect")
        refs.append((("tests", i, "input"), case.get("input")))
        refs.append((("tests", i, "expect", "payloads"),
                     expect.get("payloads") if isinstance(expect, dict) else None))
        steps = case.get("steps")
        for j, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict):
                refs.append((("tests", i, "steps", j, "input"), step.get("input")))
    return refs


def check_test_files(spec: LoadedSpec) -> list[Problem]:
    from hexaflow.paths import PathError, inside_project

    problems = []
    base = spec.path.parent
    for where, ref in _test_file_refs(spec):
        if not isinstance(ref, str):
            continue
        try:
            found = inside_project(base, ref, "test file").exists()
        except PathError as exc:
            problems.append(spec.problem(where, exc.message, exc.hint))
            continue
        if not found:
            problems.append(spec.problem(where, f"test file not found: {ref}",
                                         "paths are relative to the flow file"))
    return problems


def referenced_files(spec: LoadedSpec) -> list[Path]:
    """Every file the validation of ``spec`` reads or looks for besides the flow file itself:
    lookup tables, the coverage base, test files. Its result changes only when they do."""
    data = spec.data if isinstance(spec.data, dict) else {}
    lookups: dict[str, Any] = data["lookups"] if isinstance(data.get("lookups"), dict) else {}
    coverage: dict[str, Any] = data["coverage"] if isinstance(data.get("coverage"), dict) else {}
    names = [lookup.get("file") if isinstance(lookup, dict) else lookup for lookup in lookups.values()]
    names.append(coverage.get("base"))
    names += [ref for _, ref in _test_file_refs(spec)]
    return [spec.path.parent / name for name in names if isinstance(name, str)] + spec.included


# --------------------------------------------------------------------------- output
def render_report(report: Report, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps({"valid": not report.failed(), "flows": report.flows,
                           "problems": [p.as_dict() for p in report.problems]},
                          ensure_ascii=False, indent=2) + "\n"
    lines = [p.text() for p in report.problems]
    errors = len(report.errors())
    warnings = len(report.problems) - errors
    lines.append(f"{len(report.flows)} flow(s) checked: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines) + "\n"
