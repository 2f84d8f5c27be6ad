"""What every part of a run shares: the ``RunContext`` (one frozen value instead of long
parameter lists) and the run's ``Connectors``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hexaflow.connector import Connector, ConnectorContext
from hexaflow.environment import RunSettings, environment_config
from hexaflow.errors import FlowError
from hexaflow.plan import Plan
from hexaflow.registry import get_connector
from hexaflow.state import StateStore
from hexaflow.summary import RunSummary


class Connectors:
    """Connector instances of one run, created on first use and closed at the end."""

    def __init__(self, tenant: str, base_dir: Path, config: dict[str, str] | None = None):
        self.tenant, self.base_dir = tenant, base_dir
        self.config = config if config is not None else environment_config()
        self._open: dict[str, Connector] = {}

    def get(self, name: str) -> Connector:
        if name not in self._open:
            cls = get_connector(name)
            if cls is None:
                raise FlowError(f"unknown connector {name!r}")
            self._open[name] = cls(ConnectorContext(self.tenant, self.config, str(self.base_dir)))
        return self._open[name]

    def close(self) -> None:
        for connector in self._open.values():
            connector.close()
        self._open.clear()


def _ignore(line: str) -> None:
    """A report nobody reads."""


@dataclass(frozen=True)
class RunContext:
    """One run of one flow for one tenant. ``dry_run``: nothing is written to the store or the
    targets (documents that would be sent go to ``emit``); ``fence`` is the flow lock's fencing
    number passed into every state write (None in a dry run, which takes no lock)."""
    plan: Plan
    tenant: str
    store: StateStore
    connectors: Connectors
    summary: RunSummary
    settings: RunSettings = field(default_factory=RunSettings)
    dry_run: bool = False
    fence: int | None = None
    report: Callable[[str], None] = _ignore
    emit: Callable[[dict[str, Any]], None] | None = None
    retry_rejected: bool = False   # `dlq replay`: a rejected document is always sent again

    @property
    def flow(self) -> str:
        return self.plan.name
