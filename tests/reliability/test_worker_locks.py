"""A worker that loses its flow lock, and a worker frozen past its heartbeat (issue 16, "Lost
lock"): one shop, its orders written slowly (MISA answers in 40 ms, saves in batches of 10)
so that runs are long enough to be interrupted. Every document still lands exactly once, and
no two runs of the flow ever overlap."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_kit import HEXAFLOW, assert_same_documents, base_env
from state_backends import make_target
from test_worker_chaos import Shop, _jobs, _tenants

pytest.importorskip("procrastinate")

ORDERS = 200


@pytest.fixture(scope="module")
def shop():
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("many_sandboxes.py")),
                             "1", str(ORDERS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        made = Shop(json.loads(proc.stdout.readline())[0])
        yield made
        made.http.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def reference(shop, tmp_path_factory):
    base = tmp_path_factory.mktemp("ref") / "tenants"
    _tenants(base, [shop])
    shop.reset(ORDERS)
    done = subprocess.run([HEXAFLOW, "run", "orders.yaml", "--tenants", str(base)],
                          env=base_env(HEXAFLOW_STATE=str(base.parent / "ref.db"),
                                       MISA_APP_ID="chaos-partner-app"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return shop.misa_snapshot()


def _setup(shop, tmp_path, request) -> tuple[Path, str, dict]:
    base = tmp_path / "tenants"
    _tenants(base, [shop])
    shop.reset(ORDERS)
    shop.faults("misa", latency_ms=40)
    state = str(make_target("postgresql", tmp_path, request))
    env = base_env(HEXAFLOW_STATE=state, MISA_APP_ID="chaos-partner-app", MISA_SAVE_BATCH="10",
                   HEXAFLOW_SETTLE_SECONDS="1", HEXAFLOW_WORKER_HEARTBEAT_S="1",
                   HEXAFLOW_WORKER_STALLED_S="3")
    return base, state, env


def _rows(state: str, sql: str, args: tuple = ()) -> list[tuple]:
    import psycopg
    with psycopg.connect(state, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def _wait(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _worker(env: dict, base: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([HEXAFLOW, "worker", "--tenants", str(base), "--interval", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(log, "a"),
                            start_new_session=True)


def _stop(*workers: subprocess.Popen) -> None:
    for w in workers:
        if w.poll() is None:
            os.killpg(w.pid, signal.SIGCONT)
            os.killpg(w.pid, signal.SIGTERM)
    for w in workers:
        w.wait(30)


def _no_overlap(state: str) -> None:
    spans = _rows(state, "SELECT started_at, coalesce(finished_at, 1e12) FROM runs ORDER BY 1")
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"two runs of the flow overlapped: {spans}"


def test_a_worker_whose_lock_session_ends_is_refused_by_the_fence(shop, reference, tmp_path, request):
    base, state, env = _setup(shop, tmp_path, request)
    log = tmp_path / "worker.log"
    worker = _worker(env, base, log)
    try:
        _wait(lambda: shop.received() > 30, "the worker writing to MISA")
        ended = _rows(state, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "application_name LIKE %s", (f"hexaflow-lock:%:{worker.pid}",))
        assert ended and all(r[0] for r in ended)
        # A new owner (a run by hand) takes the lock: the fencing number moves on.
        by_hand = subprocess.run([HEXAFLOW, "run", "orders.yaml", "--tenants", str(base)],
                                 env=env, capture_output=True, text=True, timeout=300)
        assert by_hand.returncode == 0, by_hand.stderr[-2000:]
        fenced = re.compile(r"lost its flow lock|holds the lock now|took the lock while")
        _wait(lambda: fenced.search(log.read_text()), "the worker refused by the fence")
        _wait(lambda: not _jobs(state, "todo", "doing"), "the queue empty", timeout=120)
    finally:
        _stop(worker)
    assert _rows(state, "SELECT count(*) FROM ledger WHERE state IN ('planned', 'failed')") == [(0,)]
    assert_same_documents(shop.misa_snapshot(), reference)


def test_a_worker_frozen_past_its_heartbeat_never_runs_beside_its_successor(
        shop, reference, tmp_path, request):
    base, state, env = _setup(shop, tmp_path, request)
    first, second = _worker(env, base, tmp_path / "first.log"), None
    try:
        _wait(lambda: shop.received() > 30, "the first worker writing to MISA")
        os.killpg(first.pid, signal.SIGSTOP)        # frozen: its sessions (and flow lock) live on
        second = _worker(env, base, tmp_path / "second.log")
        # The sweeper gives the frozen worker's job to the second, whose run finds the flow
        # locked and tries again, and again, while the first is frozen.
        _wait(lambda: "running elsewhere" in (tmp_path / "second.log").read_text(),
              "the second worker refused the flow lock", timeout=60)
        os.killpg(first.pid, signal.SIGCONT)
        _wait(lambda: not _jobs(state, "todo", "doing"), "the queue empty", timeout=180)
    finally:
        _stop(first, *([second] if second else []))
    _no_overlap(state)
    assert _rows(state, "SELECT count(*) FROM ledger WHERE state IN ('planned', 'failed')") == [(0,)]
    assert_same_documents(shop.misa_snapshot(), reference)
