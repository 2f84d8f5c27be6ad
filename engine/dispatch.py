"""The dispatcher: the one place that decides when a flow runs in ``hexaflow serve``.

Receivers and the scheduler only *ask* for a run of (tenant, flow); a few runner threads
(HEXAFLOW_SERVE_RUNNERS) run the requests, **at most one run per tenant at a time**: a tenant
whose systems hang or fail occupies one runner at most and backs off, while the other tenants'
runs go on (docs/tenants.md). Asking twice before the run starts is asking once (a set); asking while
the flow runs makes it run once more afterwards, because the run in progress may have read its
page before the change that caused the request. Exactly-once effects do not depend on any of
this: the ledger and the fencing lock guarantee them whoever runs the flow and how often.

Many workers on many machines later means putting these requests on a job queue; the contract
(``request``) stays the same.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterable, Mapping

from hexaflow.connector import ConnectorError
from hexaflow.environment import serve_runners
from hexaflow.plan import Plan
from hexaflow.runner import Budget, Connectors, FlowError, poll_results, run_flow
from hexaflow.state import LostLock, StateStore, open_store, state_fault

log = logging.getLogger("hexaflow.serve")

RETRY_LOCKED_S = 1.0       # a flow locked by another run (e.g. `hexaflow run` by hand)
RETRY_FAILED_S = 5.0       # a run that raised (target down, lock lost): try again later,
RETRY_FAILED_MAX_S = 300.0  # doubling the wait after each failure in a row up to this
RUN_BUDGET_S = 30.0        # a long catch-up run yields to other flows and asks again

Key = tuple[str, str]      # (tenant, flow name)

# The tenant whose work this thread does now (a run, a delivery): log lines carry it.
CURRENT_TENANT: ContextVar[str | None] = ContextVar("hexaflow_tenant", default=None)


class FlowRouting:
    """Which of a tenant's flows read a source or write to a connector, and asking for all of
    them (``plans``: tenant → flow name → plan), for both dispatchers."""
    plans: dict[str, dict[str, Plan]]

    def flows_reading(self, tenant: str, connector: str, resource: str) -> list[str]:
        return [p.name for p in self.plans.get(tenant, {}).values()
                if p.source.connector == connector and p.source.resource == resource]

    def flows_writing(self, tenant: str, connector: str) -> list[str]:
        return [p.name for p in self.plans.get(tenant, {}).values()
                if any(route.connector == connector or
                       any(ens.connector == connector for ens in route.ensure)
                       for route in p.routes)]

    def request(self, tenant: str, flow: str, delay: float = 0.0) -> None:
        raise NotImplementedError      # each dispatcher asks in its own way

    def request_all(self, tenant: str | None = None) -> None:
        """Ask for every flow of ``tenant`` (None: of every tenant)."""
        for name in ([tenant] if tenant is not None else list(self.plans)):
            for flow in self.plans.get(name, {}):
                self.request(name, flow)


class Dispatcher(FlowRouting):
    def __init__(self, plans: Mapping[str, Iterable[Plan]], *, state_path: str,
                 config_for: Callable[[str], Mapping[str, str]],
                 budget_s: float = RUN_BUDGET_S):
        """``plans``: each tenant's flows; ``config_for``: tenant → its configuration."""
        self.plans = {tenant: {p.name: p for p in flows} for tenant, flows in plans.items()}
        self.state_path = state_path
        self.config_for = config_for           # tenant → configuration (secrets included)
        self.budget_s = budget_s
        self.runners = serve_runners()
        self._pending: dict[Key, float] = {}   # key → not before (time.monotonic())
        self._running: set[Key] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._local = threading.local()        # each runner's own store connection
        self._connectors: dict[tuple[str, Path], Connectors] = {}
        # Start time of each flow's last completed run: inbox rows older than the oldest of
        # these, over the flows reading a source, have been seen by every such flow.
        self._completed_start: dict[Key, float] = {}
        self._failures: dict[Key, int] = {}    # failed runs in a row, for the backoff
        self._retry_at: dict[Key, float] = {}  # key → no run before this (the backoff's end)
        self.runs = 0                          # completed runs, for /health and tests
        self._outcomes: dict[tuple[str, str, str], int] = {}   # (tenant, flow, outcome) → runs

    # -- asking ---------------------------------------------------------------------------
    def request(self, tenant: str, flow: str, delay: float = 0.0) -> None:
        if flow not in self.plans.get(tenant, {}):
            raise KeyError((tenant, flow))
        key, due = (tenant, flow), time.monotonic() + delay
        with self._cond:
            # Coalesce: one pending request per (tenant, flow), the earliest wins; but a flow
            # whose runs keep failing waits out its backoff whoever asks (a scheduled tick, a
            # webhook, a request made while it ran), as its log line said. Events wait in the
            # inbox meanwhile.
            earliest = min(due, self._pending.get(key, due))
            self._pending[key] = max(earliest, self._retry_at.get(key, 0.0))
            self._cond.notify_all()

    def request_source(self, tenant: str, connector: str, resource: str) -> list[str]:
        """Ask for a run of every flow whose source is ``connector``/``resource``."""
        flows = self.flows_reading(tenant, connector, resource)
        for flow in flows:
            self.request(tenant, flow)
        return flows

    # -- state for /health, /metrics and tests ----------------------------------------------
    def run_counts(self) -> dict[tuple[str, str, str], int]:
        """Runs finished by this dispatcher per (tenant, flow, outcome): ok, failed (raised;
        tried again later) or locked (the flow was running elsewhere)."""
        with self._cond:
            return dict(self._outcomes)

    def _count(self, tenant: str, flow: str, outcome: str) -> None:
        with self._cond:
            key = (tenant, flow, outcome)
            self._outcomes[key] = self._outcomes.get(key, 0) + 1

    def pending(self) -> list[Key]:
        with self._cond:
            return sorted(self._pending)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until nothing is pending or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    # -- the worker -------------------------------------------------------------------------
    def start(self) -> "Dispatcher":
        for number in range(self.runners):
            thread = threading.Thread(target=self._work, name=f"hexaflow-runner-{number + 1}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """No new runs; wait (bounded) for the runs in progress to finish."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _next(self) -> Key | None:
        """The next due request whose tenant has no run in progress (the earliest first)."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                busy = {tenant for tenant, _ in self._running}
                due = [(t, k) for k, t in self._pending.items() if t <= now and k[0] not in busy]
                if due:
                    key = min(due)[1]
                    del self._pending[key]
                    self._running.add(key)
                    return key
                wait = min(self._pending.values(), default=now + 1.0) - now
                self._cond.wait(max(0.01, min(wait, 1.0)))
            return None

    @property
    def _store(self) -> StateStore:
        return self._local.store

    def _work(self) -> None:
        self._local.store = open_store(self.state_path)
        try:
            while (key := self._next()) is not None:
                try:
                    self._run(*key)
                except Exception:  # a bug must not stop the runner; the scheduler retries
                    log.exception("serve: run of flow %s (tenant %s) failed", key[1], key[0],
                                  extra={"tenant": key[0]})
                    self._drop_connectors(key[0])
                finally:
                    with self._cond:
                        self._running.discard(key)
                        self._cond.notify_all()
        finally:
            if all(t is threading.current_thread() or not t.is_alive() for t in self._threads):
                with self._cond:
                    for connectors in self._connectors.values():
                        connectors.close()
                    self._connectors.clear()
            self._store.close()

    def _connectors_for(self, tenant: str, plan: Plan) -> Connectors:
        # Kept across runs so tokens and rate-limit buckets are reused (latency); one set per
        # tenant and flow folder (relative paths in connector settings are per folder).
        key = (tenant, plan.base_dir)
        with self._cond:
            if key not in self._connectors:
                self._connectors[key] = Connectors(tenant, plan.base_dir,
                                                   dict(self.config_for(tenant)))
            return self._connectors[key]

    def _drop_connectors(self, tenant: str) -> None:
        with self._cond:
            dropped = [self._connectors.pop(k) for k in list(self._connectors) if k[0] == tenant]
        for connectors in dropped:
            connectors.close()

    def _poll_only(self, tenant: str, plan: Plan) -> None:
        assert self._store is not None
        try:
            poll_results(plan, tenant, self._store, self._connectors_for(tenant, plan))
        except Exception as exc:  # the target is down too: the next tick tries again
            log.error("serve: polling results of flow %s failed: %s", plan.name, exc)
            self._drop_connectors(tenant)

    def _run(self, tenant: str, flow: str) -> None:
        token = CURRENT_TENANT.set(tenant)
        try:
            self._run_flow(tenant, self.plans[tenant][flow])
        finally:
            CURRENT_TENANT.reset(token)

    def _run_flow(self, tenant: str, plan: Plan) -> None:
        flow = plan.name
        store = self._store
        assert store is not None
        started = store.now()       # compared with the inbox's times, on the store's clock
        try:
            summary = run_flow(plan, tenant=tenant, store=store,
                               connectors=self._connectors_for(tenant, plan),
                               budget=Budget(max_seconds=self.budget_s),
                               report=lambda line: log.warning("serve: %s: %s", flow, line))
        except FlowError as exc:
            if store.lock_holder(tenant, flow) is not None:
                # Another process runs this flow now; ours must still happen after it.
                self._count(tenant, flow, "locked")
                log.info("serve: flow %s is running elsewhere; trying again shortly", flow)
                self.request(tenant, flow, delay=RETRY_LOCKED_S)
            else:
                self._count(tenant, flow, "failed")
                log.error("serve: flow %s cannot run: %s", flow, exc)
            return
        except Exception as exc:  # a system down, a lost lock, a bug: try again later
            self._count(tenant, flow, "failed")
            failures = self._failures[(tenant, flow)] = self._failures.get((tenant, flow), 0) + 1
            delay = min(RETRY_FAILED_MAX_S, RETRY_FAILED_S * 2 ** (failures - 1))
            fault = state_fault(store.path, exc) if isinstance(exc, sqlite3.Error) else None
            if isinstance(exc, (ConnectorError, LostLock)) or fault is not None:
                log.error("serve: flow %s: %s; trying again in %.0f s", flow, fault or exc, delay)
            else:
                log.exception("serve: flow %s failed; trying again in %.0f s", flow, delay)
            self._drop_connectors(tenant)
            if not isinstance(exc, LostLock) and fault is None:
                # The source may be down while the target still answers: results of queued
                # documents are polled after each failed run all the same.
                self._poll_only(tenant, plan)
            with self._cond:
                self._retry_at[(tenant, flow)] = time.monotonic() + delay
            self.request(tenant, flow, delay=delay)
            return
        with self._cond:
            self._retry_at.pop((tenant, flow), None)
        self._failures.pop((tenant, flow), None)
        with self._cond:
            self.runs += 1
        self._count(tenant, flow, "ok")
        log.info("serve: %s", summary.render().strip().replace("\n", " | "))
        if summary.more_left:
            self.request(tenant, flow)      # stopped at its budget: not everything is read
            return
        self._completed_start[(tenant, flow)] = started
        source = plan.source
        readers = self.flows_reading(tenant, source.connector, source.resource)
        seen_by_all = min(self._completed_start.get((tenant, f), 0.0) for f in readers)
        if seen_by_all:
            store.mark_inbox_handled(tenant, source.connector, source.resource, seen_by_all)
