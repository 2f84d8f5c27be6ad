"""Chaos (issue 16): 3 worker processes run 10 shops' orders (100 demo orders each, through
their lifecycles: paid, shipped, refunded, cancelled) from the job queue in the PostgreSQL
state store while a random worker is SIGKILLed every few seconds (30 kills), restarted each
time. Afterwards every shop's MISA company holds exactly what an uninterrupted single-process
run (`hexaflow run --tenants`) gives it: 0 duplicated, 0 missing; no job is left running and
every ledger row is settled — with no run after the workers' own.

The shops (10 Haravan + MISA sandbox pairs) run in a process of their own
(many_sandboxes.py), so that they outlive the workers. Workers are declared gone after 4 s
without a heartbeat (HEXAFLOW_WORKER_STALLED_S) so that the sweeper retries a killed worker's
jobs within seconds, not the production 30 s.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from reliability_kit import HEXAFLOW, Sandboxes, assert_same_documents, base_env
from state_backends import make_target

pytest.importorskip("procrastinate")

SHOPS, ORDERS, WORKERS, KILLS = 10, 100, 3, 30
SEED = 20261204
DEADLINE_S = 240


class Shop(Sandboxes):
    """One shop's sandbox pair, served by many_sandboxes.py (admin helpers of Sandboxes)."""

    def __init__(self, spec: dict):    # not Sandboxes.__init__: that starts a sandbox process
        self.credentials = spec["credentials"]
        self.haravan, self.misa = spec["haravan"], spec["misa"]
        self.http = httpx.Client(timeout=30)


def _tenants(base: Path, shops: list[Shop]) -> None:
    from hexaflow.scaffold import add_tenant
    secrets = base / ".secrets"
    secrets.mkdir(parents=True)
    for n, shop in enumerate(shops):
        name = f"shop-{n:02d}"
        add_tenant(base, name)
        for other in ("customers.yaml", "products.yaml", "inventory.yaml"):
            (base / name / other).unlink()       # the orders flow alone (it ensures customers)
        creds = shop.credentials
        (secrets / f"{name}.env").write_text("".join(
            f"{k}={creds[k]}\n" for k in ("HARAVAN_TOKEN", "HARAVAN_WEBHOOK_SECRET", "MISA_ACCESS_CODE")))
        (secrets / f"{name}.env").chmod(0o600)
        (base / name / "tenant.yaml").write_text(
            f"environment:\n  HARAVAN_BASE_URL: {shop.haravan}\n  MISA_BASE_URL: {shop.misa}\n"
            f"  MISA_ORG_COMPANY_CODE: '{creds['MISA_ORG_COMPANY_CODE']}'\n"
            f"secrets: ../.secrets/{name}.env\n")


def _end_lock_sessions(state: str, pid: int) -> int:
    """End the flow-lock sessions of worker ``pid`` (what a network partition does to them);
    give its runs a moment to hit the fence before the kill. Returns how many ended."""
    import psycopg
    with psycopg.connect(state, autocommit=True) as conn:
        ended = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                             "pg_stat_activity WHERE application_name LIKE %s",
                             (f"hexaflow-lock:%:{pid}",)).fetchone()
    time.sleep(0.5)
    return int(ended[0]) if ended else 0


def _jobs(state: str, *statuses: str) -> int:
    import psycopg
    with psycopg.connect(state) as conn:
        row = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = ANY(%s) "
                           "AND task_name = 'hexaflow.run_flow'", (list(statuses),)).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture
def shops(tmp_path):
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("many_sandboxes.py")),
                             str(SHOPS), str(ORDERS)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line, "the sandboxes did not start"
        made = [Shop(spec) for spec in json.loads(line)]
        yield made
    finally:
        for shop in locals().get("made", []):
            shop.http.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _reset(shops: list[Shop]) -> None:
    for shop in shops:
        shop.reset(ORDERS)
        shop.faults("haravan", rate_limit=True)


def _worker(env: dict, base: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([HEXAFLOW, "worker", "--tenants", str(base), "--interval", "0",
                             "--concurrency", "2"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "a"), start_new_session=True)


def test_three_workers_killed_thirty_times_give_every_shop_exactly_its_documents(
        shops, tmp_path, request):
    base = tmp_path / "tenants"
    _tenants(base, shops)
    common = {"MISA_APP_ID": "chaos-partner-app", "HEXAFLOW_SETTLE_SECONDS": "1",
              "MISA_SAVE_BATCH": "10"}
    # The reference: one process, no interruption, a fresh SQLite state.
    _reset(shops)
    done = subprocess.run([HEXAFLOW, "run", "orders.yaml", "--tenants", str(base)],
                          env=base_env(HEXAFLOW_STATE=str(tmp_path / "reference.db"), **common),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = [shop.misa_snapshot() for shop in shops]
    assert all(len(e["docs"]) >= 50 for e in expected), [len(e["docs"]) for e in expected]

    _reset(shops)
    state = str(make_target("postgresql", tmp_path, request))
    env = base_env(HEXAFLOW_STATE=state, HEXAFLOW_WORKER_HEARTBEAT_S="1",
                   HEXAFLOW_WORKER_STALLED_S="4", **common)
    logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
    workers = [_worker(env, base, logs[i]) for i in range(WORKERS)]
    rng = random.Random(SEED)
    deadline = time.monotonic() + DEADLINE_S
    kills = cut_sessions = 0
    try:
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.0, 2.5))
            victim = rng.randrange(WORKERS)
            if kills % 3 == 1:
                # A partition instead of a kill: the worker's flow-lock sessions end under it.
                cut_sessions += _end_lock_sessions(state, workers[victim].pid)
            os.killpg(workers[victim].pid, signal.SIGKILL)
            workers[victim].wait(10)
            kills += 1
            workers[victim] = _worker(env, base, logs[victim])   # its start-up asks for every flow
        assert kills == KILLS
        # Every job done, whoever was killed (the sweeper retries the killed workers' jobs).
        while time.monotonic() < deadline and _jobs(state, "todo", "doing"):
            time.sleep(0.5)
        assert _jobs(state, "todo", "doing") == 0, "jobs left waiting or running"
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
    import psycopg
    with psycopg.connect(state) as conn:
        unsettled = conn.execute("SELECT tenant, state, count(*) FROM ledger WHERE state IN "
                                 "('planned', 'failed') GROUP BY 1, 2").fetchall()
        runs = conn.execute("SELECT count(*) FILTER (WHERE status = 'ok'), count(*) FILTER "
                            "(WHERE status = 'running') FROM runs").fetchone()
    assert unsettled == [], unsettled
    assert runs is not None
    ok_runs, cut_runs = runs
    assert ok_runs >= SHOPS, runs                     # the workers ran every shop's flow
    assert cut_runs >= 3, runs                        # and kills cut runs off half-way
    swept = sum(log.read_text().count("of a worker that stopped") for log in logs)
    assert swept >= 1, "no killed worker's job was taken over by the sweeper"
    print(f"\n{KILLS} kills: {ok_runs} runs completed, {cut_runs} cut off, {swept} jobs swept, "
          f"{cut_sessions} lock sessions ended before a kill")
    for n, shop in enumerate(shops):
        try:
            assert_same_documents(shop.misa_snapshot(), expected[n])
        except AssertionError as exc:
            raise AssertionError(f"shop-{n:02d}: {exc}") from None
