"""The job queue as `hexaflow status` and the status page show it (docs/workers.md "What you
see", docs/status-page.md "The job queue"): per tenant and flow the jobs waiting, running,
stalled and failed in the last 24 h, and each worker's heartbeat; on SQLite, or on a
PostgreSQL store without the queue's tables, nothing of it and nothing broken.

The jobs are real Procrastinate jobs in the test's own PostgreSQL database, deferred as
`hexaflow serve` and the workers defer them, and taken by "workers" registered through the
app's job manager (as tests/workers/test_queue.py does); no flow runs. Two shops whose jobs
differ in every count, so a page showing the other shop's jobs would show other numbers.
"""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from state_backends import make_target

pytest.importorskip("procrastinate")

from hexaflow import queue, queue_view  # noqa: E402
from hexaflow.state import open_store  # noqa: E402
from hexaflow.statuspage import StatusPage  # noqa: E402

TOKEN = "queue-view-admin-token-7b2d4e9f1a"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
TENANTS = {"shop-a": {"orders": ("haravan", "orders"), "customers": ("haravan", "customers")},
           "shop-b": {"orders": ("haravan", "orders"), "customers": ("haravan", "customers")}}
# What the scenario leaves in the queue, per (tenant, flow):
# (waiting, of them scheduled later, running, stalled, failed in the last 24 h)
EXPECTED = {("shop-a", "customers"): (1, 1, 0, 0, 0), ("shop-a", "orders"): (1, 0, 1, 0, 0),
            ("shop-b", "customers"): (0, 0, 0, 0, 1), ("shop-b", "orders"): (0, 0, 0, 1, 0)}


async def _defer(app, tenant: str, flow: str, **configure) -> None:
    """As queue.defer_run does (its lock and queueing lock), from async code."""
    key = queue.job_lock(tenant, flow)
    await app.configure_task(queue.TASK, lock=key, queueing_lock=key, **configure).defer_async(
        tenant=tenant, flow=flow, failures=0)


async def _scenario(app) -> dict[str, int]:
    """Fill the queue as EXPECTED says, and say which worker is which."""
    from procrastinate.jobs import Status
    async with app.open_async():
        manager = app.job_manager
        live, dead = await manager.register_worker(), await manager.register_worker()

        async def take(worker: int, lock: str) -> int:
            job = await manager.fetch_job([queue.QUEUE], worker)
            assert job is not None and job.lock == lock, job
            return job.id

        await _defer(app, "shop-a", "orders")
        await take(live, "shop-a:orders")                  # running on a live worker
        await _defer(app, "shop-a", "orders")              # and its successor waits
        await _defer(app, "shop-b", "orders")
        await take(dead, "shop-b:orders")                  # its worker then stops: stalled
        for age in ("2 days", None):                       # failed: two days ago, and now
            await _defer(app, "shop-b", "customers")
            failed = await take(live, "shop-b:customers")
            await manager.finish_job_by_id_async(failed, Status.FAILED, delete_job=False)
            if age:
                await app.connector.execute_query_async(
                    f"UPDATE procrastinate_events SET at = now() - interval '{age}' "
                    f"WHERE job_id = {failed}")
        await _defer(app, "shop-a", "customers", schedule_in={"seconds": 600})   # a backoff
        # The sweeper's own job waits too: no tenant's.
        await app.configure_task(queue.SWEEP_TASK, queueing_lock=queue.SWEEP_TASK).defer_async(timestamp=0)
        await app.connector.execute_query_async(
            f"UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' WHERE id = {dead}")
    return {"live": live, "dead": dead}


@pytest.fixture
def filled_queue(tmp_path, request) -> tuple[str, dict[str, int]]:
    state = str(make_target("postgresql", tmp_path, request))
    open_store(state).close()
    queue.ensure_schema(state)
    return state, asyncio.run(_scenario(queue.make_app(state)))


def _counts(queues) -> dict[tuple[str, str], tuple[int, ...]]:
    return {(q.tenant, q.flow): (q.waiting, q.later, q.running, q.stalled, q.failed) for q in queues}


def _tenants_folder(base: Path) -> Path:
    for tenant in TENANTS:
        (base / tenant).mkdir(parents=True)
        (base / tenant / "tenant.yaml").write_text("environment: {}\n")
    return base


def test_the_queue_is_counted_per_tenant_and_flow_and_each_worker_with_its_heartbeat(filled_queue):
    state, workers = filled_queue
    store = open_store(state)
    try:
        assert queue_view.has_queue(store)
        assert _counts(queue_view.flow_queues(store)) == EXPECTED
        assert _counts(queue_view.flow_queues(store, "shop-b")) == {
            k: v for k, v in EXPECTED.items() if k[0] == "shop-b"}
        assert queue_view.flow_queues(store, "shop-z") == []
        found = {w.id: w for w in queue_view.workers(store)}
        assert set(found) == {workers["live"], workers["dead"]}
        live, dead = found[workers["live"]], found[workers["dead"]]
        assert live.alive and live.heartbeat_age < queue_view.stalled_after() and live.jobs == ("shop-a:orders",)
        assert not dead.alive and 3500 < dead.heartbeat_age < 3700 and dead.jobs == ("shop-b:orders",)
        # A running worker's sweeper prunes the stopped one: its job, now of no worker, is
        # still stalled, until the sweeper retries it.
        asyncio.run(_prune(state))
        assert [w.id for w in queue_view.workers(store)] == [workers["live"]]
        assert _counts(queue_view.flow_queues(store)) == EXPECTED
    finally:
        store.close()


async def _prune(state: str) -> None:
    app = queue.make_app(state)
    async with app.open_async():
        await app.job_manager.prune_stalled_workers(queue_view.stalled_after())


def test_status_prints_each_tenants_queue_and_the_workers_once(filled_queue, tmp_path, cli):
    state, workers = filled_queue
    base = _tenants_folder(tmp_path / "tenants")
    result = cli("status", "--tenants", str(base), env={"HEXAFLOW_STATE": state})
    assert result.exit_code == 0, result.output
    shop_a, shop_b = result.output.split("== tenant shop-b")
    assert "queue:\n  customers: 1 waiting (1 scheduled later)\n  orders: 1 waiting, 1 running\n" in shop_a
    assert "stalled" not in shop_a and "failed in 24 h" not in shop_a
    assert "queue:\n  customers: 1 failed in 24 h\n  orders: 1 stalled\n" in shop_b
    assert result.output.count("workers: ") == 1
    assert "workers: 1 alive, 1 stalled\n" in shop_b
    assert f"  worker {workers['live']}: heartbeat 0 s ago, alive, runs shop-a:orders\n" in shop_b
    assert re.search(rf"  worker {workers['dead']}: heartbeat 60 min ago, stalled \(no heartbeat "
                     rf"for 30 s\), runs shop-b:orders\n", shop_b), shop_b
    one = cli("status", "--tenants", str(base), "--tenant", "shop-a", env={"HEXAFLOW_STATE": state})
    assert "no runs yet for tenant 'shop-a'" in one.output and "orders: 1 waiting, 1 running" in one.output
    assert "shop-b:orders" in one.output          # the workers part is the store's, not a tenant's
    # Stalled is the workers' own setting: with two hours, the silent worker is alive still.
    patient = cli("status", "--tenants", str(base), "--tenant", "shop-b",
                  env={"HEXAFLOW_STATE": state, "HEXAFLOW_WORKER_STALLED_S": "7200"})
    assert "orders: 1 running\n" in patient.output and "workers: 2 alive\n" in patient.output


def _page(page: StatusPage, path: str) -> str:
    answer = page.handle("GET", path, BEARER)
    assert answer.status == 200, answer.body[:300]
    return answer.body.decode("utf-8")


def _queue_rows(html: str) -> dict[str, tuple[int, ...]]:
    return {m[0]: tuple(int(n) for n in m[1:]) for m in re.findall(
        r'<tr class="queue-row" data-flow="([^"]+)" data-waiting="(\d+)" data-later="(\d+)"\s+'
        r'data-running="(\d+)" data-stalled="(\d+)" data-failed="(\d+)">', html)}


def _worker_rows(html: str) -> dict[int, tuple[str, int]]:
    return {int(w): (alive, int(jobs)) for w, alive, jobs in re.findall(
        r'<tr class="worker-row" data-worker="(\d+)" data-alive="(\w+)" data-jobs="(\d+)">', html)}


def test_each_tenants_page_shows_its_own_jobs_and_the_tenant_list_the_workers(filled_queue):
    state, workers = filled_queue
    page = StatusPage(config={"HEXAFLOW_ADMIN_TOKEN": TOKEN, "HEXAFLOW_UI_LANGUAGE": "en"},
                      state=state, tenants=TENANTS)
    for tenant in TENANTS:
        html = _page(page, f"/status/t/{tenant}/")
        assert "Job queue" in html and 'id="workers"' not in html
        assert _queue_rows(html) == {flow: counts for (t, flow), counts in EXPECTED.items() if t == tenant}
        other = next(t for t in TENANTS if t != tenant)
        assert f"{other}:" not in html
    assert "1 scheduled later" in _page(page, "/status/t/shop-a/")
    listing = _page(page, "/status")
    assert _worker_rows(listing) == {workers["live"]: ("yes", 1), workers["dead"]: ("no", 1)}
    assert "<code>shop-a:orders</code>" in listing and "<code>shop-b:orders</code>" in listing
    assert "60 min ago" in listing and "stalled" in listing
    cells = dict(re.findall(r'data-tenant="([^"]+)".*?<td class="small queue-cell">(.*?)</td>',
                            listing, re.S))
    assert re.findall(r'data-(\w+)="(\d+)"', cells["shop-a"]) == [("waiting", "2"), ("running", "1")]
    assert re.findall(r'data-(\w+)="(\d+)"', cells["shop-b"]) == [("stalled", "1"), ("failed", "1")]
    vi = _page(page, "/status?lang=vi")
    assert "Tiến trình worker" in vi and "mất tín hiệu" in vi and "đang hoạt động" in vi
    assert "Hàng đợi công việc" in _page(page, "/status/t/shop-b/?lang=vi")


def test_one_tenants_overview_shows_its_queue_and_the_workers_without_other_tenants_jobs(filled_queue):
    state, workers = filled_queue
    page = StatusPage(config={"HEXAFLOW_ADMIN_TOKEN": TOKEN, "HEXAFLOW_UI_LANGUAGE": "en"},
                      state=state, tenants={"shop-a": TENANTS["shop-a"]})
    html = _page(page, "/status")
    assert _queue_rows(html) == {"customers": (1, 1, 0, 0, 0), "orders": (1, 0, 1, 0, 0)}
    # The workers are shown (there is no tenant list), how many jobs each runs, not whose.
    assert _worker_rows(html) == {workers["live"]: ("yes", 1), workers["dead"]: ("no", 1)}
    assert "shop-b" not in html


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_without_a_job_queue_status_and_the_pages_show_none_and_nothing_breaks(backend, tmp_path,
                                                                               request, cli):
    state = str(make_target(backend, tmp_path, request))
    store = open_store(state)          # a store of hexaflow's tables only: no queue in it
    try:
        run = store.start_run("shop-a", "orders")
        store.finish_run(run, "ok", {"records": 1, "failed_records": 0})
        assert not queue_view.has_queue(store)
        assert queue_view.flow_queues(store) is None and queue_view.workers(store) is None
    finally:
        store.close()
    assert queue_view.queue_text(None) == "queue: no job queue\n"
    base = _tenants_folder(tmp_path / "tenants")
    result = cli("status", "--tenants", str(base), env={"HEXAFLOW_STATE": state})
    assert result.exit_code == 0, result.output
    assert "orders: cursor" in result.output
    assert "queue:" not in result.output and "workers:" not in result.output
    config = {"HEXAFLOW_ADMIN_TOKEN": TOKEN, "HEXAFLOW_UI_LANGUAGE": "en"}
    for tenants in (TENANTS, {"shop-a": TENANTS["shop-a"]}):
        page = StatusPage(config=config, state=state, tenants=tenants)
        for path in ("/status", "/status/t/shop-a/"):
            html = _page(page, path)
            assert "Job queue" not in html and 'id="workers"' not in html and "queue-cell" not in html
