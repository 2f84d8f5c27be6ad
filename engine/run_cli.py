"""``hexaflow run``: a flow for the tenant, or for every tenant of a tenants folder, with a
progress line on a terminal and the summary at the end (docs/cli.md)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO, TypedDict, Unpack

from hexaflow.connector import ConnectorError
from hexaflow.environment import run_settings
from hexaflow.errors import FlowError
from hexaflow.plan import Plan
from hexaflow.runcontext import Connectors
from hexaflow.runner import EXIT_CONFIG, EXIT_OK, EXIT_RECORDS_FAILED, load_plan, run_flow
from hexaflow.state import LostLock, StateError, StateStore, open_store, state_faults
from hexaflow.summary import RunSummary


class Streams(TypedDict, total=False):
    out: TextIO | None      # payloads of a dry run, the summary of a run (default stdout)
    err: TextIO | None      # problems, progress, the summary of a dry run (default stderr)
    tenants: str | None     # the tenants folder (--tenants; default HEXAFLOW_TENANTS)


def run_command(flow: str, *, dry_run: bool = False, limit: int | None = None,
                tenant: str | None = None, state_path: str | None = None,
                **streams: Unpack[Streams]) -> int:
    """``hexaflow run``: the flow for the tenant, or for every tenant of the tenants folder
    (``streams["tenants"]``) one after another; the exit code is the worst of them."""
    from hexaflow.tenants import TenantError, flow_of, select_tenants
    out = streams.get("out") or sys.stdout
    err = streams.get("err") or sys.stderr
    try:
        chosen, skipped = select_tenants(streams.get("tenants"), tenant)
    except FlowError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    for line in skipped:
        print(f"warning: {line}", file=err)
    worst = EXIT_OK
    ready: list[tuple[Plan, str, str, dict[str, str]]] = []
    for one in chosen:
        label = f"tenant {one.name}: " if one.in_tenants_folder else ""
        try:
            ready.append((load_plan(flow_of(one, flow)), one.name, label, one.config()))
        except (FlowError, TenantError) as exc:
            for problem in getattr(exc, "problems", []):
                print(problem.text(), file=err)
            print(f"error: {label}{exc}", file=err)
            worst = EXIT_CONFIG
            continue
        for warning in one.warnings:
            print(f"warning: {label}{warning}", file=err)
    if not ready:
        return worst
    try:
        run_settings()            # a bad number stops the run before anything is written
        store = open_store(state_path)
    except (FlowError, StateError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    try:
        for plan, name, label, config in ready:
            target = RunTarget(name, label, store, Connectors(name, plan.base_dir, config))
            worst = max(worst, _run_one(plan, target, dry_run=dry_run, limit=limit, out=out, err=err))
    finally:
        store.close()
    return worst


@dataclass(frozen=True)
class RunTarget:
    """Who a command-line run is for: the tenant, the label its lines start with, the store
    and the tenant's connectors (closed when the run ends)."""
    tenant: str
    label: str
    store: StateStore
    connectors: Connectors


def _run_one(plan: Plan, target: RunTarget, *, dry_run: bool, limit: int | None,
             out: TextIO, err: TextIO) -> int:
    interactive = err.isatty()
    label = target.label

    def emit(doc: dict[str, Any]) -> None:
        if dry_run:
            shown = {"tenant": target.tenant, **doc} if label else doc
            out.write(json.dumps(shown, ensure_ascii=False, sort_keys=False) + "\n")

    def report(line: str) -> None:
        if interactive:
            err.write("\r\033[K")
        print(label + line, file=err)

    def progress(summary: RunSummary) -> None:
        if interactive:
            per_route = ", ".join(f"{r} {sum(v for k, v in c.items() if k != 'matched')}"
                                  for r, c in summary.routes.items())
            err.write(f"\r\033[K{label}read {summary.records} · failed {summary.failed_records}"
                      f" · {per_route}")
            err.flush()

    try:
        with state_faults(target.store.path):      # a damaged or read-only file shows mid-run too
            summary = run_flow(plan, tenant=target.tenant, store=target.store,
                               connectors=target.connectors, dry_run=dry_run, limit=limit,
                               emit=emit, report=report, progress=progress)
    except (FlowError, ConnectorError, LostLock, StateError) as exc:
        if interactive:
            err.write("\r\033[K")
        print(f"error: {label}{exc}", file=err)
        return EXIT_CONFIG
    finally:
        target.connectors.close()
    if interactive:
        err.write("\r\033[K")
    stream = err if dry_run else out
    if label:
        stream.write(label.rstrip() + "\n")
    stream.write(summary.render())
    return EXIT_RECORDS_FAILED if summary.failed else EXIT_OK
