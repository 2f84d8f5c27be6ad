"""The one place hexaflow reads its process environment (``os.environ``).

Everything beneath reads what this module hands over: connectors get ``environment_config()``
as their ``context.config``; a run gets its knobs as ``RunSettings``; the tenant, the state store
and the few other defaults come from the functions below. A test or a host process that passes
its own config never depends on the process environment.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hexaflow.errors import FlowError

DEFAULT_TENANT = "default"


def environment_config() -> dict[str, str]:
    """The mapping handed to connectors as ``ConnectorContext.config`` (a copy: changing it
    changes nothing else)."""
    return dict(os.environ)


def tenant_name(explicit: str | None = None) -> str:
    """The tenant a command works for: the one given, else HEXAFLOW_TENANT, else ``default``."""
    return explicit or os.environ.get("HEXAFLOW_TENANT") or DEFAULT_TENANT


def tenants_location(explicit: str | None = None) -> str | None:
    """The tenants folder: the one given (--tenants), else HEXAFLOW_TENANTS, else None (the
    current folder is the single tenant)."""
    return explicit or os.environ.get("HEXAFLOW_TENANTS") or None


def serve_runners() -> int:
    """HEXAFLOW_SERVE_RUNNERS: runs a serve process makes at once (at most one per tenant)."""
    return max(1, int(env_number("HEXAFLOW_SERVE_RUNNERS", 4.0, "a number of runs; e.g. 4")))


def worker_timing() -> tuple[float, float]:
    """(heartbeat, stalled-after) seconds of workers: HEXAFLOW_WORKER_HEARTBEAT_S (default 5)
    and HEXAFLOW_WORKER_STALLED_S (default 30; a worker silent this long is gone)."""
    return (env_number("HEXAFLOW_WORKER_HEARTBEAT_S", 5.0),
            env_number("HEXAFLOW_WORKER_STALLED_S", 30.0))


def state_location(explicit: str | None, default: str) -> str:
    """The state store path or URL: the one given, else HEXAFLOW_STATE, else ``default``."""
    return explicit or os.environ.get("HEXAFLOW_STATE") or default


def cache_dir() -> Path:
    """Where validate keeps its cache (HEXAFLOW_CACHE_DIR, default ./.hexaflow/cache)."""
    return Path(os.environ.get("HEXAFLOW_CACHE_DIR") or Path(".hexaflow") / "cache")


def ui_timezone(default: str) -> str:
    """The zone the status page shows times in (HEXAFLOW_UI_TIMEZONE, else ``default``)."""
    return os.environ.get("HEXAFLOW_UI_TIMEZONE") or default


def env_number(name: str, default: float, example: str = "a number of seconds; e.g. 5") -> float:
    """The number in the environment variable ``name`` (``default`` when unset); FlowError
    naming the variable when it is not a number of 0 or more."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise FlowError(f"{name}={raw}: not {example}")
    return value


@dataclass(frozen=True)
class RunSettings:
    """The knobs of a run. The defaults are what a run uses when nothing is set."""
    settle_seconds: float = 5.0   # HEXAFLOW_SETTLE_SECONDS: how long a run polls for results
    batch_delay: float = 0.5      # HEXAFLOW_BATCH_DELAY: how long a part-filled batch waits
    read_ahead: int = 2           # HEXAFLOW_READ_AHEAD: pages read ahead of the mapping


def log_format(explicit: str | None) -> str:
    """--log-format, else HEXAFLOW_LOG_FORMAT, else text (lower case, not yet checked)."""
    return (explicit or os.environ.get("HEXAFLOW_LOG_FORMAT") or "text").strip().lower()


def state_pool_max() -> int:
    """HEXAFLOW_STATE_POOL_MAX: connections a process keeps to a PostgreSQL state store."""
    return max(1, int(env_number("HEXAFLOW_STATE_POOL_MAX", 8.0, "a number of connections; e.g. 8")))


def run_settings() -> RunSettings:
    """RunSettings from the environment; FlowError naming the first variable that is not a
    number of 0 or more (in this order: settle, batch delay, read-ahead)."""
    return RunSettings(
        settle_seconds=env_number("HEXAFLOW_SETTLE_SECONDS", 5.0, "a number of seconds; e.g. 5"),
        batch_delay=env_number("HEXAFLOW_BATCH_DELAY", 0.5, "a number of seconds; e.g. 0.5"),
        read_ahead=int(env_number("HEXAFLOW_READ_AHEAD", 2.0, "a number of pages; e.g. 2")))
