"""Problems found in specs, reported as ``file:line:col: severity: message (hint: ...)``."""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Iterable

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    hint: str = ""
    severity: str = ERROR

    def text(self) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}{hint}"

    def as_dict(self) -> dict:
        return asdict(self)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' did you mean 'x'?' or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def path_text(path: tuple) -> str:
    """routes[0].fields.detail for ('routes', 0, 'fields', 'detail')."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"
