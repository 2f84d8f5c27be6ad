"""What reading the job queue costs `hexaflow status` and the status page (engine/queue_view.py)
with many shops: one tenant's jobs per flow (a tenant's overview, `status --tenant`), every
tenant's (the tenant list) and the workers, over a queue of TENANTS × FLOWS waiting jobs, one
running job per WORKERS, and FAILED failed jobs spread over the last two days.

    python bench/queue_view.py          # --tenants 1000 --failed 50000 --workers 20 --repeat 20

Needs a PostgreSQL (HEXAFLOW_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test):
it makes a database of its own, fills it in bulk with SQL (as Procrastinate's defers and the
workers would leave it, events included), prints the median and worst time of each read, and
drops the database.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg

from hexaflow import queue, queue_view
from hexaflow.state import open_store

FLOWS = ("customers", "orders", "products", "inventory")


def _database(admin: str, name: str) -> str:
    return urlunsplit(urlsplit(admin)._replace(path="/" + name))


def fill(url: str, tenants: int, failed: int, workers: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO procrastinate_workers (last_heartbeat) SELECT now() "
                     "FROM generate_series(1, %s)", (workers,))
        # Every (tenant, flow) waits once (its queueing lock allows no more); a tenth later.
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args, "
            "status, scheduled_at) SELECT %s, %s, t || ':' || f, t || ':' || f, "
            "jsonb_build_object('tenant', t, 'flow', f, 'failures', 0), 'todo', "
            "CASE WHEN n %% 10 = 0 THEN now() + interval '5 minutes' END "
            "FROM (SELECT 'shop-' || i AS t, f, row_number() OVER () AS n "
            "      FROM generate_series(1, %s) i, unnest(%s::text[]) f) pairs",
            (queue.QUEUE, queue.TASK, tenants, list(FLOWS)))
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, status, worker_id) "
            "SELECT %s, %s, 'shop-' || w.id || ':orders', jsonb_build_object('tenant', "
            "'shop-' || w.id, 'flow', 'orders', 'failures', 0), 'doing', w.id "
            "FROM procrastinate_workers w", (queue.QUEUE, queue.TASK))
        conn.execute(
            "WITH jobs AS (INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args, "
            "status) SELECT %s, %s, t || ':orders', jsonb_build_object('tenant', t, 'flow', "
            "'orders', 'failures', 0), 'failed' FROM (SELECT 'shop-' || (1 + i %% %s) AS t "
            "FROM generate_series(1, %s) i) f RETURNING id) "
            "INSERT INTO procrastinate_events (job_id, type, at) SELECT id, 'failed', "
            "now() - (id %% 48) * interval '1 hour' FROM jobs",
            (queue.QUEUE, queue.TASK, tenants, failed))
        conn.execute("ANALYZE")


def timed(read, repeat: int) -> tuple[float, float]:
    spans = []
    for _ in range(repeat):
        began = time.perf_counter()
        read()
        spans.append(time.perf_counter() - began)
    return statistics.median(spans), max(spans)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--failed", type=int, default=50000)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    admin = os.environ.get("HEXAFLOW_TEST_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/test"
    name = f"hexaflow_bench_queue_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database(admin, name)
    try:
        open_store(url).close()
        queue.ensure_schema(url)
        began = time.perf_counter()
        fill(url, options.tenants, options.failed, options.workers)
        jobs = options.tenants * len(FLOWS) + options.workers + options.failed
        print(f"queue: {jobs:,} jobs ({options.tenants:,} tenants × {len(FLOWS)} flows waiting, "
              f"{options.workers} running, {options.failed:,} failed over 48 h), "
              f"{options.workers} workers; filled in {time.perf_counter() - began:.1f} s")
        store = open_store(url)
        store.make_read_only()
        try:
            one = queue_view.flow_queues(store, "shop-7")
            assert one is not None and {q.flow for q in one} == set(FLOWS), one
            every = queue_view.flow_queues(store)
            assert every is not None and len(every) == options.tenants * len(FLOWS)
            for what, read in (("one tenant's jobs per flow", lambda: queue_view.flow_queues(store, "shop-7")),
                               ("every tenant's jobs per flow", lambda: queue_view.flow_queues(store)),
                               ("the workers", lambda: queue_view.workers(store))):
                median, worst = timed(read, options.repeat)
                print(f"{what:<30} median {median * 1000:8.1f} ms   worst {worst * 1000:8.1f} ms")
        finally:
            store.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
