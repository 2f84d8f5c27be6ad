"""``hexaflow check``'s generic half: settings that name things in a target, compared with what
the target holds.

Whoever knows a project's settings lists what they name (:class:`Wanted`: the kind, the code,
the setting and where it is written); the target's connector says what it holds of each
(:meth:`hexaflow.connector.Connector.references`); this module compares and reports. The
packaged connectors' settings are listed by ``hexaflow.connectors.check``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hexaflow.connector import Connector
from hexaflow.yamlload import Position, SourceMap, SpecSyntaxError, parse_yaml, read_text

EXIT_OK, EXIT_PROBLEMS = 0, 1     # 1: a configuration error (docs/cli.md, exit codes)


@dataclass(frozen=True)
class Where:
    """A place in a settings file, for people (``file:line:col``)."""
    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


@dataclass(frozen=True)
class Wanted:
    """A setting that names something a target must hold: ``kind`` is the connector's kind
    (e.g. account, item, stock, bank_account), ``fix`` says what to do if it is not there,
    given the target's reason (e.g. "add it in the target, or set ...")."""
    kind: str
    code: str
    setting: str
    where: Where
    fix: Callable[[str], str]


@dataclass(frozen=True)
class Finding:
    setting: str
    where: Where
    kind: str
    code: str | None
    problem: str
    fix: str

    def text(self) -> str:
        return f"{self.where}: {self.setting}: {self.problem} (fix: {self.fix})"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["where"] = str(self.where)
        out.update(file=self.where.file, line=self.where.line, col=self.where.col)
        return out


class SettingsFile:
    """A YAML settings file with the position of every value, so findings can say file:line."""

    def __init__(self, path: Path, display: str):
        self.display = display
        self._smap: SourceMap | None
        try:
            self.data, self._smap = parse_yaml(read_text(path, display), display)
        except (OSError, UnicodeDecodeError, SpecSyntaxError):
            # The flow loaded the table already; a file that cannot be read again is named
            # without a line rather than not at all.
            self.data, self._smap = None, None

    def where(self, *path: str | int) -> Where:
        if self._smap is None:
            return Where(self.display)
        pos: Position = self._smap.at(tuple(path))
        return Where(self.display, pos.line, pos.col)


def compare(connector: Connector, wanted: Sequence[Wanted]) -> list[Finding]:
    """A finding for each wanted entry the target lacks or cannot use; one question to the
    connector per kind. A kind the connector cannot tell about is a finding too: the check
    would otherwise pass without having looked."""
    findings: list[Finding] = []
    by_kind: dict[str, list[Wanted]] = {}
    for entry in wanted:
        by_kind.setdefault(entry.kind, []).append(entry)
    for kind, entries in by_kind.items():
        answers = connector.references(kind, sorted({e.code for e in entries}))
        for entry in entries:
            if answers is None:
                problem = f"connector {connector.name!r} cannot say whether it holds {kind} {entry.code}"
                findings.append(Finding(entry.setting, entry.where, kind, entry.code, problem,
                                        "check it by hand"))
            elif answers.get(entry.code) is not None:
                reason = str(answers[entry.code])
                findings.append(Finding(entry.setting, entry.where, kind, entry.code,
                                        f"{kind.replace('_', ' ')} {entry.code} {reason}",
                                        entry.fix(reason)))
    return findings


def render(findings: Iterable[Finding], checked: int, fmt: str) -> str:
    findings = list(findings)
    if fmt == "json":
        return json.dumps({"ok": not findings, "checked": checked,
                           "problems": [f.as_json() for f in findings]},
                          ensure_ascii=False, indent=2) + "\n"
    lines = [f.text() for f in findings]
    lines.append(f"{checked} setting(s) checked: {len(findings)} problem(s)")
    return "\n".join(lines) + "\n"
