"""What a run did, counted per route, and the budget it runs within."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hexaflow.connector import FAILED, REJECTED


@dataclass
class RunSummary:
    flow: str
    dry_run: bool = False
    records: int = 0
    failed_records: int = 0
    routes: dict[str, Counter] = field(default_factory=dict)
    more_left: bool = False
    cursor: Any = None
    errors: list[str] = field(default_factory=list)

    def count(self, route: str, outcome: str, n: int = 1) -> None:
        self.routes.setdefault(route, Counter())[outcome] += n

    @property
    def failed(self) -> bool:
        return self.failed_records > 0 or any(
            c[FAILED] or c[REJECTED] for c in self.routes.values())

    def as_dict(self) -> dict[str, Any]:
        return {"flow": self.flow, "dry_run": self.dry_run, "records": self.records,
                "failed_records": self.failed_records, "more_left": self.more_left,
                "routes": {r: dict(c) for r, c in self.routes.items()}}

    def render(self) -> str:
        head = " (dry run)" if self.dry_run else ""
        lines = [f"{self.flow}{head}: read {self.records} records, {self.failed_records} failed"
                 + (" (more left)" if self.more_left else "")]
        order = ("written", "would_write", "queued", "skipped", "conflict", "rejected", "failed",
                 "matched")
        width = max([len(r) for r in self.routes] + [5])
        for route, counts in self.routes.items():
            parts = [f"{name} {counts[name]}" for name in order if counts.get(name)]
            lines.append(f"  {route:<{width}}  " + (", ".join(parts) or "nothing"))
        if not self.dry_run and (self.failed_records
                                 or any(c.get("rejected") for c in self.routes.values())):
            lines.append("kept as dead letters: `hexaflow dlq list` shows why; fix the data or the "
                         "flow, then `hexaflow dlq replay <flow file>`")
        return "\n".join(lines) + "\n"


@dataclass
class Budget:
    max_pages: int | None = None
    max_seconds: float | None = None
