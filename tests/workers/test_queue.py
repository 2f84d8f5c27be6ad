"""Flow runs on the job queue (docs/workers.md): exclusion per (tenant, flow) across worker
processes, enqueueing inside the receiver's transaction, and the sweeper's way out of the
stalled-job pitfall (research-scale-out.md M2). PostgreSQL over loopback; bounded waits."""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state_backends import make_target

pytest.importorskip("procrastinate")

from hexaflow import queue  # noqa: E402
from hexaflow.state import open_store  # noqa: E402

FLOW = """\
flow: {name}
source: {{connector: file, resource: records, params: {{path: {name}.jsonl}}, as: order}}
routes:
  - name: sales_order
    target: {{connector: file, document: records}}
    key: "{prefix}_<<order.id>>"
    fields: {{memo: "<<order.memo>>"}}
"""
TENANTS, FLOWS, JOBS_PER_PAIR = 5, ("orders", "refunds"), 5
RECORDS = 600


def _tenants(base: Path, records: int = RECORDS) -> None:
    for n in range(TENANTS):
        folder = base / f"shop-{n}"
        folder.mkdir(parents=True)
        (folder / "tenant.yaml").write_text(f"environment: {{HEXAFLOW_FILE_OUT: {base.parent}/out-{n}}}\n")
        for flow in FLOWS:
            (folder / f"{flow}.yaml").write_text(FLOW.format(name=flow, prefix=flow.upper()))
            (folder / f"{flow}.jsonl").write_text(
                "".join(json.dumps({"id": i, "memo": flow}) + "\n" for i in range(records)))


def _jobs(state: str, statuses: tuple[str, ...]) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row
    with psycopg.connect(state, row_factory=dict_row) as conn:
        return list(conn.execute("SELECT id, lock, queueing_lock, status, priority FROM "
                                 "procrastinate_jobs WHERE status = ANY(%s)", (list(statuses),)))


def _wait(predicate, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def test_four_workers_never_overlap_runs_of_one_pair_and_run_other_pairs_in_parallel(tmp_path, request):
    state = str(make_target("postgresql", tmp_path, request))
    base = tmp_path / "tenants"
    _tenants(base)
    open_store(state).close()
    queue.ensure_schema(state)
    app = queue.make_app(state)
    with app.open():
        for n, flow, _ in itertools.product(range(TENANTS), FLOWS, range(JOBS_PER_PAIR)):
            # The lock only (no queueing lock): 5 jobs of each pair wait at once.
            app.configure_task(queue.TASK, lock=queue.job_lock(f"shop-{n}", flow)).defer(
                tenant=f"shop-{n}", flow=flow, failures=0)
    assert len(_jobs(state, ("todo",))) == TENANTS * len(FLOWS) * JOBS_PER_PAIR
    env = {**os.environ, "HEXAFLOW_STATE": state, "HEXAFLOW_SETTLE_SECONDS": "0"}
    workers = [subprocess.Popen([sys.executable, "-m", "hexaflow.cli", "worker", "--tenants", str(base),
                                 "--interval", "0", "--concurrency", "2"], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"w{i}.log", "w"))
               for i in range(4)]
    try:
        _wait(lambda: not _jobs(state, ("todo", "doing")), "every job done", timeout=120)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    store = open_store(state)
    try:
        intervals: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for n, flow in itertools.product(range(TENANTS), FLOWS):
            runs = store.runs(f"shop-{n}", flow, limit=100)
            # Each job one run; each worker's start-up catch-up may add one waiting job a pair.
            assert JOBS_PER_PAIR <= len(runs) <= JOBS_PER_PAIR + 1, runs
            assert all(r["status"] == "ok" for r in runs), runs
            intervals[(f"shop-{n}", flow)] = sorted((r["started_at"], r["finished_at"]) for r in runs)
            assert len(store.entries(f"shop-{n}", flow)) == RECORDS     # each document once
    finally:
        store.close()
    for pair, spans in intervals.items():
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, f"two runs of {pair} overlapped"
    firsts = sorted(spans[0] for spans in intervals.values())
    overlapping = sum(1 for a, b in zip(firsts, firsts[1:]) if b[0] < a[1])
    assert overlapping >= 1, "no two pairs ran at the same time"
    assert not _jobs(state, ("failed",))


def test_a_job_deferred_in_a_transaction_that_fails_is_gone_with_its_inbox_row(tmp_path, request):
    state = str(make_target("postgresql", tmp_path, request))
    store = open_store(state)
    queue.ensure_schema(state)
    app = queue.make_app(state)
    try:
        with app.open():
            with pytest.raises(RuntimeError):
                with store.transaction():
                    assert store.put_inbox("shop-a", "haravan", "orders", "1", "v1")
                    assert queue.defer_run(app, "shop-a", "orders",
                                           connection=store.transaction_connection())
                    raise RuntimeError("the receiver died before its commit")
            assert store.inbox("shop-a") == [] and _jobs(state, ("todo",)) == []
            with store.transaction():       # the same, committed: both are kept
                store.put_inbox("shop-a", "haravan", "orders", "1", "v1")
                assert queue.defer_run(app, "shop-a", "orders", priority=queue.PRIORITY_HOOK,
                                       connection=store.transaction_connection())
                # A second request while one waits is dropped, and the transaction goes on.
                assert not queue.defer_run(app, "shop-a", "orders",
                                           connection=store.transaction_connection())
                store.put_inbox("shop-a", "haravan", "orders", "2", "v1")
            assert len(store.inbox("shop-a")) == 2
            jobs = _jobs(state, ("todo",))
            assert [(j["lock"], j["queueing_lock"], j["priority"]) for j in jobs] == [
                ("shop-a:orders", "shop-a:orders", queue.PRIORITY_HOOK)]
    finally:
        store.close()


def test_the_sweeper_retries_a_stalled_job_or_closes_it_when_a_newer_one_waits(tmp_path, request):
    state = str(make_target("postgresql", tmp_path, request))
    open_store(state).close()
    queue.ensure_schema(state)
    app = queue.make_app(state)

    async def scenario() -> tuple[tuple[int, int], list[dict]]:
        async with app.open_async():
            manager = app.job_manager
            worker_id = await manager.register_worker()
            for tenant in ("shop-a", "shop-b"):
                await app.configure_task(queue.TASK, lock=f"{tenant}:orders",
                                         queueing_lock=f"{tenant}:orders").defer_async(
                    tenant=tenant, flow="orders", failures=0)
            for _ in range(2):               # a worker took both, then died
                assert await manager.fetch_job([queue.QUEUE], worker_id) is not None
            # A webhook asks for shop-b again meanwhile: allowed, the first is not waiting.
            await app.configure_task(queue.TASK, lock="shop-b:orders",
                                     queueing_lock="shop-b:orders").defer_async(
                tenant="shop-b", flow="orders", failures=0)
            await app.connector.execute_query_async(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'")
            return await queue.sweep_stalled(app), []
    (retried, failed), _ = asyncio.run(scenario())
    assert (retried, failed) == (1, 1)
    todo = _jobs(state, ("todo",))
    assert sorted(j["lock"] for j in todo) == ["shop-a:orders", "shop-b:orders"]
    assert [j["lock"] for j in _jobs(state, ("failed",))] == ["shop-b:orders"]
