"""What the job queue holds, for ``hexaflow status`` and the status page (docs/workers.md,
docs/status-page.md): per tenant and flow the jobs waiting, running, stalled and failed
lately, and each worker with its heartbeat.

Read-only, plain SQL on the store's own connection (``store.db.execute``, ``?`` marks), and
no Procrastinate import: the readers (the status page, ``status``) need not install the
queue, and a query cannot take a job's lock by mistake. The tables are Procrastinate 3's
(``procrastinate_jobs``, ``procrastinate_workers``, ``procrastinate_events``); a stalled job
is what its own sweeper query calls one (``doing`` with a worker whose heartbeat is older
than HEXAFLOW_WORKER_STALLED_S, or whose worker row is gone). Ages come from the server's
clock, so every process shows the same. On SQLite, or on a PostgreSQL store without those tables (serve runs
the flows itself), there is no job queue: the readers return None and nothing is shown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hexaflow.environment import worker_timing
from hexaflow.queue import TASK

FAILED_WINDOW_S = 24 * 3600      # failed jobs are counted over the last day
WORKERS_SHOWN = 200


def stalled_after() -> float:
    """Seconds without a heartbeat after which a worker is gone: the workers' own setting
    (HEXAFLOW_WORKER_STALLED_S), which the readers must be given alike."""
    return worker_timing()[1]


@dataclass(frozen=True)
class FlowQueue:
    """The jobs of one (tenant, flow). ``waiting`` counts every job to do, ``later`` those of
    them scheduled for later (backoff, a retry of a flow running elsewhere)."""
    tenant: str
    flow: str
    waiting: int = 0
    later: int = 0
    running: int = 0
    stalled: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Worker:
    id: int
    heartbeat_age: float           # seconds since its last heartbeat, by the server's clock
    jobs: tuple[str, ...]          # the locks ("<tenant>:<flow>") of the jobs it runs
    alive: bool


def has_queue(store: Any) -> bool:
    """Whether the store holds Procrastinate's tables (only a PostgreSQL store can)."""
    if store.dialect == "sqlite":
        return False
    row = store.db.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def flow_queues(store: Any, tenant: str | None = None) -> list[FlowQueue] | None:
    """The jobs of ``tenant`` (of every tenant when None) per flow, flows with any job only;
    None without a job queue. One statement over the jobs table, which holds what is to do,
    running, and finished without success (the workers delete the successful ones)."""
    if not has_queue(store):
        return None
    alive = "w.last_heartbeat >= now() - ? * interval '1 second'"
    # When a job failed is known from its events only. For one tenant: an index probe per
    # failed job of that tenant. For all: one pass over the recent failures, since a probe
    # per job is costed high enough that PostgreSQL compiles the statement with JIT, which
    # takes longer than the query (bench/queue_view.py; figures in bench/README.md).
    recent = ("LEFT JOIN LATERAL (SELECT e.job_id FROM procrastinate_events e WHERE "
              "j.status = 'failed' AND e.job_id = j.id AND e.type = 'failed' AND "
              "e.at >= now() - ? * interval '1 second' LIMIT 1) f ON true" if tenant is not None
              else "LEFT JOIN (SELECT DISTINCT job_id FROM procrastinate_events WHERE "
                   "type = 'failed' AND at >= now() - ? * interval '1 second') f "
                   "ON f.job_id = j.id")
    sql = (
        "SELECT j.args->>'tenant', j.args->>'flow', "
        "count(*) FILTER (WHERE j.status = 'todo'), "
        "count(*) FILTER (WHERE j.status = 'todo' AND j.scheduled_at > now()), "
        f"count(*) FILTER (WHERE j.status = 'doing' AND {alive}), "
        f"count(*) FILTER (WHERE j.status = 'doing' AND (w.id IS NULL OR NOT {alive})), "
        "count(*) FILTER (WHERE j.status = 'failed') "
        "FROM procrastinate_jobs j LEFT JOIN procrastinate_workers w ON w.id = j.worker_id "
        f"{recent} WHERE j.task_name = ? AND (j.status IN ('todo', 'doing') OR "
        "(j.status = 'failed' AND f.job_id IS NOT NULL))")
    args: list[Any] = [stalled_after(), stalled_after(), FAILED_WINDOW_S, TASK]
    if tenant is not None:
        sql += " AND j.args->>'tenant' = ?"
        args.append(tenant)
    rows = store.db.execute(sql + " GROUP BY 1, 2 ORDER BY 1, 2", args)
    return [FlowQueue(t, f, *(int(n) for n in counts)) for t, f, *counts in rows]


def workers(store: Any) -> list[Worker] | None:
    """Every registered worker, oldest first, with the jobs it runs; None without a job
    queue. A stalled worker stays listed until a running worker's sweeper prunes it."""
    if not has_queue(store):
        return None
    rows = store.db.execute(
        "SELECT w.id, extract(epoch FROM now() - w.last_heartbeat)::float8, "
        "array_remove(array_agg(coalesce(j.lock, j.task_name) ORDER BY j.lock), NULL) "
        "FROM procrastinate_workers w LEFT JOIN procrastinate_jobs j "
        "ON j.worker_id = w.id AND j.status = 'doing' "
        "GROUP BY w.id ORDER BY w.id LIMIT ?", (WORKERS_SHOWN,))
    gone = stalled_after()
    return [Worker(int(wid), max(0.0, float(age)), tuple(jobs or ()), age < gone)
            for wid, age, jobs in rows]


def age_text(seconds: float) -> str:
    """A heartbeat's age as a person reads it: 4 s, 3 min, 2 h."""
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds // 3600)} h"


def queue_text(queues: list[FlowQueue] | None) -> str:
    """The "queue" part of one tenant's ``hexaflow status``: one line per flow with jobs."""
    if queues is None:
        return "queue: no job queue\n"
    if not queues:
        return "queue: no job waiting or running\n"
    lines = ["queue:"]
    for q in queues:
        parts = []
        if q.waiting:
            parts.append(f"{q.waiting} waiting" + (f" ({q.later} scheduled later)" if q.later else ""))
        parts += [f"{n} {what}" for n, what in ((q.running, "running"), (q.stalled, "stalled"),
                                                (q.failed, "failed in 24 h")) if n]
        lines.append(f"  {q.flow}: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def workers_text(found: list[Worker] | None) -> str:
    """The workers part of ``hexaflow status``, once for all tenants."""
    if found is None:
        return "workers: no job queue\n"
    if not found:
        return "workers: none registered\n"
    stalled = sum(not w.alive for w in found)
    lines = [f"workers: {len(found) - stalled} alive" + (f", {stalled} stalled" if stalled else "")]
    for w in found:
        state = "alive" if w.alive else f"stalled (no heartbeat for {stalled_after():g} s)"
        jobs = f"runs {', '.join(w.jobs)}" if w.jobs else "runs nothing"
        lines.append(f"  worker {w.id}: heartbeat {age_text(w.heartbeat_age)} ago, {state}, {jobs}")
    return "\n".join(lines) + "\n"
