"""``hexaflow tenants``: every tenant with its health (docs/tenants.md).

For each tenant: its flows (do they load?), its configuration (can it be built, does it hold
what the flows' connectors require, does it share a secret with another tenant?), and from the
state store its last runs, documents by state and open dead letters. The health word is the
worst that applies: ``invalid`` (flows or configuration broken: it cannot run), ``failing``
(a flow's last run failed), ``problems`` (dead letters, rejected documents or conflicts to
look at), ``ok``.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from hexaflow.errors import FlowError
from hexaflow.reports import flows_in
from hexaflow.state import StateStore
from hexaflow.tenants import Tenant, TenantError, declared_variables

HEALTH_ORDER = ("ok", "problems", "failing", "invalid")


@dataclass
class TenantHealth:
    name: str
    description: str = ""
    folder: str = ""
    flows: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)     # why invalid
    warnings: list[str] = field(default_factory=list)
    last_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    health: str = "ok"


def _worse(current: str, other: str) -> str:
    return max(current, other, key=HEALTH_ORDER.index)


def _configuration(one: Tenant, used: set[str], health: TenantHealth) -> dict[str, str]:
    """The tenant's configuration ({} when it cannot be built), with what is missing."""
    try:
        config = one.config()
    except (TenantError, FlowError) as exc:
        health.problems.append(str(exc))
        return {}
    health.warnings += one.warnings
    from hexaflow.registry import get_connector
    for name in sorted(used):
        cls = get_connector(name)
        for var in getattr(cls, "config_vars", ()) or ():
            if var.required and not config.get(var.name):
                health.problems.append(f"{var.name} is not set (connector {name})")
    return config


def _flows(one: Tenant, health: TenantHealth) -> set[str]:
    """The tenant's flows (names) and the connectors they use; problems when one is broken."""
    from hexaflow.runner import load_plan
    from hexaflow.validate import Report, find_flow_files
    report = Report()
    files = find_flow_files([str(one.folder)], report)
    used: set[str] = set()
    if not files:
        health.problems.append(f"no flow file in {one.folder}")
    for path in files:
        try:
            plan = load_plan(path)
        except FlowError as exc:
            health.problems.append(f"{exc}")
            continue
        health.flows.append(plan.name)
        used.add(plan.source.connector)
        for route in plan.routes:
            used.update([route.connector] if route.connector else [])
            used.update(ens.connector for ens in route.ensure)
    return used


def _state(store: StateStore, name: str, health: TenantHealth) -> None:
    for flow in flows_in(store, name):
        runs = store.runs(name, flow, limit=1)
        if runs:
            run = runs[0]
            health.last_runs[flow] = {"status": run["status"], "started_at": run["started_at"]}
            if run["status"] == "failed":
                health.health = _worse(health.health, "failing")
    states = Counter(e.state for e in store.entries(name))
    health.documents = dict(sorted(states.items()))
    health.dead_letters = len(store.dead_letters(name))
    if health.dead_letters or states.get("rejected") or states.get("conflict"):
        health.health = _worse(health.health, "problems")


def tenant_health(store: StateStore, tenants: list[Tenant]) -> list[TenantHealth]:
    secrets = {n for n, v in declared_variables().items() if v.secret}
    owners: dict[tuple[str, str], list[str]] = {}
    found = []
    for one in tenants:
        health = TenantHealth(one.name, one.description, str(one.folder))
        if one.in_tenants_folder:
            config = _configuration(one, _flows(one, health), health)
            for var in secrets:
                if config.get(var):
                    digest = hashlib.sha256(config[var].encode("utf-8")).hexdigest()
                    owners.setdefault((var, digest), []).append(one.name)
        _state(store, one.name, health)
        found.append(health)
    by_name = {h.name: h for h in found}
    for (var, _), names in sorted(owners.items()):
        if len(names) > 1:
            for name in names:
                others = ", ".join(n for n in names if n != name)
                by_name[name].problems.append(f"{var} is the same as tenant {others}'s: each shop "
                                              f"needs its own credentials")
    for health in found:
        if health.problems:
            health.health = "invalid"
    return found


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def render_text(found: list[TenantHealth]) -> str:
    out = []
    for h in found:
        out.append(f"{h.name}: {h.health}" + (f"  ({h.description})" if h.description else ""))
        if h.flows:
            out.append(f"  flows: {', '.join(h.flows)}")
        for problem in h.problems:
            out.append(f"  problem: {problem}")
        for warning in h.warnings:
            out.append(f"  warning: {warning}")
        for flow, run in h.last_runs.items():
            out.append(f"  last run of {flow}: {run['status']} at {_when(run['started_at'])}")
        if h.documents:
            out.append("  documents: " + ", ".join(f"{n} {s}" for s, n in h.documents.items()))
        out.append(f"  dead letters: {h.dead_letters} open")
    ok = sum(1 for h in found if h.health == "ok")
    out.append(f"{len(found)} tenant(s): {ok} ok, {len(found) - ok} to look at")
    return "\n".join(out) + "\n"


def tenants_report(store: StateStore, tenants: list[Tenant], fmt: str) -> tuple[str, bool]:
    """The report as text or JSON, and whether every tenant is ok."""
    found = tenant_health(store, tenants)
    healthy = all(h.health == "ok" for h in found)
    if fmt == "json":
        return json.dumps({"tenants": [asdict(h) for h in found], "ok": healthy},
                          ensure_ascii=False, indent=2) + "\n", healthy
    return render_text(found), healthy
