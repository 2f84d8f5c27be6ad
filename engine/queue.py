"""Flow runs on a job queue in the PostgreSQL state store: Procrastinate (docs/workers.md,
docs/decisions/0007-flow-runs-on-procrastinate.md).

The queue only has to run "sync (tenant, flow)" somewhere, at least once; exactly-once effects
stay in the state store (ledger, fencing lock, deterministic ids). One task, ``run_flow``,
deferred with ``lock = queueing_lock = "<tenant>:<flow>"``: at most one run and one waiting
run per pair, whatever the number of workers. A run is bounded; one with more to do defers
itself again, so jobs stay short and a killed worker loses at most one page. A run that fails
defers its successor later (backoff) instead of using Procrastinate's retries, which collide
with the queueing lock (research-scale-out.md M2). The sweeper finds jobs of workers that
stopped sending heartbeats and retries them, or marks them failed when a newer job of the pair
already waits (the same pitfall).

Imported only by ``hexaflow worker`` and ``hexaflow serve`` in queue mode: the ``server`` extra
installs Procrastinate.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from hexaflow.dispatch import FlowRouting
from hexaflow.environment import worker_timing
from hexaflow.errors import FlowError, HexaflowError
from hexaflow.plan import Plan

log = logging.getLogger("hexaflow.worker")

QUEUE = "flows"
TASK = "hexaflow.run_flow"
SCHEDULE_TASK = "hexaflow.schedule"
SWEEP_TASK = "hexaflow.sweep_stalled"
SWEEP_EVERY_S = 10          # how often the sweeper looks for jobs of stopped workers (5 when
                            # workers are declared gone sooner than 10 s)
RUN_BUDGET_S = 30.0          # a run yields after this and defers itself again
RETRY_LOCKED_S = 2           # the flow is running elsewhere (a `hexaflow run` by hand)
RETRY_FAILED_S = 5           # a failed run's successor waits this, doubling ...
RETRY_FAILED_MAX_S = 300     # ... up to this
PRIORITY_HOOK, PRIORITY_SCHEDULE = 10, 0   # a webhook's run goes before a scheduled catch-up


def job_lock(tenant: str, flow: str) -> str:
    return f"{tenant}:{flow}"


def make_app(url: str, interval: float = 0) -> Any:
    """A Procrastinate app on the state store ``url`` with hexaflow's tasks registered, and
    its periodic tasks: every flow of every tenant each ``interval`` seconds (0: never; the
    queue drops a request while one waits), the sweeper every SWEEP_EVERY_S."""
    try:
        import procrastinate
    except ImportError:
        raise FlowError("the job queue needs Procrastinate: pip install 'hexaflow[server]'") from None
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.task(name=TASK, queue=QUEUE, pass_context=True)(_run_flow_task)
    sweep = app.task(name=SWEEP_TASK, queue=QUEUE, pass_context=True, queueing_lock=SWEEP_TASK)(_sweep_task)
    app.periodic(cron=every(5 if worker_timing()[1] < 10 else SWEEP_EVERY_S),
                 periodic_id="sweep")(sweep)
    if interval > 0:
        schedule = app.task(name=SCHEDULE_TASK, queue=QUEUE, pass_context=True,
                            queueing_lock=SCHEDULE_TASK)(_schedule_task)
        app.periodic(cron=every(interval), periodic_id="schedule")(schedule)
    return app


def every(seconds: float) -> str:
    """The cron line (with Procrastinate's sixth field, seconds) for "every ``seconds``":
    whole seconds dividing a minute, or whole minutes dividing an hour."""
    whole = int(seconds)
    if whole == seconds and 0 < whole < 60 and 60 % whole == 0:
        return f"* * * * * */{whole}"
    if whole == seconds and whole % 60 == 0 and 60 % (whole // 60) == 0 and whole < 3600:
        return f"*/{whole // 60} * * * *"
    raise FlowError(f"--interval {seconds:g}: the job queue schedules every N seconds where N "
                    f"divides a minute (1-30) or every N minutes where N divides an hour "
                    f"(60, 120, 300, 600, 900, 1200, 1800)")


def ensure_schema(url: str) -> None:
    """Procrastinate's own schema, applied once (its tables live beside hexaflow's), under the
    advisory lock the state store's migrations take, so two processes starting at once do not
    both apply it."""
    import psycopg

    from hexaflow.state_pg import CONNECT_TIMEOUT_S
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtextextended('hexaflow:migrations', 0))")
        row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if row is None or row[0] is None:
            from procrastinate.schema import SchemaManager
            conn.execute(SchemaManager.get_schema())    # no parameters: its % are literal
            log.info("worker: applied Procrastinate's schema to the state store")


# --------------------------------------------------------------------------- deferring
def defer_run(app: Any, tenant: str, flow: str, **options: Any) -> bool:
    """Ask for a run of (tenant, flow); False when one already waits (its queueing lock).
    Options: ``schedule_in`` (seconds), ``priority``, ``failures`` (runs failed in a row),
    ``connection`` (a psycopg connection in a transaction: the job is kept only if it
    commits)."""
    from procrastinate.exceptions import AlreadyEnqueued
    key = job_lock(tenant, flow)
    configure: dict[str, Any] = {"lock": key, "queueing_lock": key,
                                 "priority": options.get("priority", PRIORITY_SCHEDULE)}
    if options.get("schedule_in"):
        configure["schedule_in"] = {"seconds": options["schedule_in"]}
    connection = options.get("connection")
    if connection is not None:
        configure["connection"] = connection
    try:
        with _savepoint(connection):
            app.configure_task(TASK, **configure).defer(
                tenant=tenant, flow=flow, failures=int(options.get("failures", 0)))
    except AlreadyEnqueued:
        return False
    return True


@contextmanager
def _savepoint(connection: Any) -> Iterator[None]:
    """Inside the caller's transaction, a refused defer (already enqueued) must not abort the
    whole transaction: it runs in a savepoint."""
    if connection is None:
        yield
        return
    connection.execute("SAVEPOINT hexaflow_defer")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK TO SAVEPOINT hexaflow_defer")
        raise
    connection.execute("RELEASE SAVEPOINT hexaflow_defer")


# --------------------------------------------------------------------------- the worker's side
@dataclass
class WorkerTenant:
    name: str
    plans: dict[str, Plan]
    config: Mapping[str, str]


@dataclass
class Runtime:
    """What the tasks of this worker process run: every tenant's flows and configuration,
    the state store, and the connectors kept across runs per (tenant, flow)."""
    state: str
    tenants: dict[str, WorkerTenant]
    budget_s: float = RUN_BUDGET_S
    app: Any = None
    _connectors: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def connectors(self, tenant: WorkerTenant, plan: Plan) -> Any:
        from hexaflow.runcontext import Connectors
        key = (tenant.name, plan.name)
        with self._lock:
            if key not in self._connectors:
                self._connectors[key] = Connectors(tenant.name, plan.base_dir, dict(tenant.config))
            return self._connectors[key]

    def drop_connectors(self, tenant: str, flow: str) -> None:
        with self._lock:
            connectors = self._connectors.pop((tenant, flow), None)
        if connectors is not None:
            connectors.close()

    def close(self) -> None:
        with self._lock:
            for connectors in self._connectors.values():
                connectors.close()
            self._connectors.clear()


RUNTIME: Runtime | None = None        # set by `hexaflow worker` before its worker starts


def _run_flow_task(context: Any, tenant: str, flow: str, failures: int = 0) -> None:
    runtime = RUNTIME
    if runtime is None or tenant not in runtime.tenants or flow not in runtime.tenants[tenant].plans:
        # Another deployment's job, or a flow this worker does not hold: it fails, visibly.
        raise FlowError(f"this worker holds no flow {flow!r} of tenant {tenant!r}")
    from hexaflow.dispatch import CURRENT_TENANT
    token = CURRENT_TENANT.set(tenant)
    try:
        run_one(runtime, runtime.tenants[tenant], runtime.tenants[tenant].plans[flow], failures)
    finally:
        CURRENT_TENANT.reset(token)


def run_one(runtime: Runtime, tenant: WorkerTenant, plan: Plan, failures: int) -> None:
    """One bounded run; what comes next is deferred here (more to do, locked, failed)."""
    from hexaflow.connector import ConnectorError
    from hexaflow.runner import Budget, run_flow
    from hexaflow.state import open_store
    store = open_store(runtime.state)
    try:
        try:
            summary = run_flow(plan, tenant=tenant.name, store=store,
                               connectors=runtime.connectors(tenant, plan),
                               budget=Budget(max_seconds=runtime.budget_s),
                               report=lambda line: log.warning("worker: %s: %s", plan.name, line))
        except FlowError as exc:
            if store.lock_holder(tenant.name, plan.name) is not None:
                log.info("worker: flow %s of %s is running elsewhere; again in %d s",
                         plan.name, tenant.name, RETRY_LOCKED_S)
                defer_run(runtime.app, tenant.name, plan.name, schedule_in=RETRY_LOCKED_S)
                return
            log.error("worker: flow %s of %s cannot run: %s", plan.name, tenant.name, exc)
            return
        except Exception as exc:  # a system down, a lost lock, a bug: its successor waits
            delay = min(RETRY_FAILED_MAX_S, RETRY_FAILED_S * 2 ** failures)
            quiet = isinstance(exc, (ConnectorError, HexaflowError))
            (log.error if quiet else log.exception)(
                "worker: flow %s of %s failed (%s); again in %d s", plan.name, tenant.name,
                exc, delay)
            runtime.drop_connectors(tenant.name, plan.name)
            defer_run(runtime.app, tenant.name, plan.name, schedule_in=delay, failures=failures + 1)
            return
        log.info("worker: %s", summary.render().strip().replace("\n", " | "))
        if summary.more_left:
            defer_run(runtime.app, tenant.name, plan.name, priority=PRIORITY_SCHEDULE)
        else:
            _mark_inbox_seen(store, tenant, plan)
    finally:
        store.close()


def _mark_inbox_seen(store: Any, tenant: WorkerTenant, plan: Plan) -> None:
    """Inbox rows older than the start of every reader's latest run have been seen by all.
    (The queue keeps the runs asked for; these marks are what the status page shows.)"""
    source = plan.source
    readers = [p.name for p in tenant.plans.values()
               if (p.source.connector, p.source.resource) == (source.connector, source.resource)]
    starts: list[float] = []
    for flow in readers:
        done = [r for r in store.runs(tenant.name, flow, limit=5) if r["status"] != "running"]
        starts.append(float(done[0]["started_at"]) if done else 0.0)
    oldest = min(starts, default=0.0)
    if oldest > 0:
        store.mark_inbox_handled(tenant.name, source.connector, source.resource, oldest)


def schedule_all(app: Any, tenants: Mapping[str, WorkerTenant]) -> int:
    """Ask for a run of every flow of every tenant (the safety net); how many were new."""
    return sum(defer_run(app, name, flow) for name, tenant in tenants.items() for flow in tenant.plans)


async def _sweep_task(context: Any, timestamp: int) -> None:
    await sweep_stalled(context.app)


def _schedule_task(context: Any, timestamp: int) -> None:
    runtime = RUNTIME
    if runtime is not None:
        schedule_all(runtime.app, runtime.tenants)


async def sweep_stalled(app: Any, seconds: float | None = None) -> tuple[int, int]:
    """Jobs left ``doing`` by workers whose heartbeat stopped: each is retried, or marked
    failed when a newer job of its pair already waits (its retry would break the queueing
    lock, and the waiting job covers the pair). Returns (retried, failed)."""
    from procrastinate.exceptions import UniqueViolation
    from procrastinate.jobs import Status
    seconds = worker_timing()[1] if seconds is None else seconds
    retried = failed = 0
    manager = app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=seconds):
        try:
            await manager.retry_job(job)
            retried += 1
            outcome = "retried"
        except UniqueViolation as exc:
            if "queueing_lock" not in (exc.constraint_name or ""):
                raise
            await manager.finish_job_by_id_async(job.id, Status.FAILED, delete_job=False)
            failed += 1
            outcome = "closed: a newer job of its flow waits"
        log.warning("worker: job %s (%s) of a worker that stopped: %s", job.id, job.lock, outcome)
    await manager.prune_stalled_workers(seconds)
    return retried, failed


def worker_tenants(paths: list[str], tenants_dir: str | None, tenant: str | None) -> dict[str, WorkerTenant]:
    """The tenants a worker (or a queue-mode serve) holds, as serve loads them."""
    import io

    from hexaflow.serve import served_tenants
    err = io.StringIO()
    served = served_tenants(paths, tenants_dir, tenant, err)
    for line in err.getvalue().splitlines():
        log.warning("worker: %s", line)
    return {t.name: WorkerTenant(t.name, {p.name: p for p in t.plans}, t.config)
            for t in served if t.problem is None}


# --------------------------------------------------------------------------- serve's side
class QueueDispatcher(FlowRouting):
    """What ``hexaflow serve`` asks for runs through when workers run them (``--dispatch
    queue``): the same questions as the in-process Dispatcher, answered with jobs. A request
    made inside a store transaction (a webhook's inbox rows) is a job in that transaction:
    both are kept, or neither."""

    transactional = True

    def __init__(self, plans: Mapping[str, list[Plan]], *, state_path: str):
        self.plans = {tenant: {p.name: p for p in flows} for tenant, flows in plans.items()}
        ensure_schema(state_path)
        self.app = make_app(state_path).open()
        self.runs = 0
        self._asked: dict[tuple[str, str], int] = {}

    def request(self, tenant: str, flow: str, delay: float = 0.0, store: Any = None) -> None:
        if flow not in self.plans.get(tenant, {}):
            raise KeyError((tenant, flow))
        connection = store.transaction_connection() if store is not None else None
        defer_run(self.app, tenant, flow, schedule_in=int(delay + 0.999) if delay else 0,
                  priority=PRIORITY_HOOK, connection=connection)
        self._asked[(tenant, flow)] = self._asked.get((tenant, flow), 0) + 1

    def request_source(self, tenant: str, connector: str, resource: str,
                       store: Any = None) -> list[str]:
        flows = self.flows_reading(tenant, connector, resource)
        for flow in flows:
            self.request(tenant, flow, store=store)
        return flows

    def run_counts(self) -> dict[tuple[str, str, str], int]:
        """Runs asked of the queue by this process (workers count the runs themselves)."""
        return {(t, f, "queued"): n for (t, f), n in self._asked.items()}

    def pending(self) -> list[tuple[str, str]]:
        return []

    def idle(self) -> bool:
        return True

    def wait_idle(self, timeout: float) -> bool:
        return True

    def start(self) -> "QueueDispatcher":
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.app.close()
