"""Two ``hexaflow run`` of one flow at the same time on the same state (issue 6): no
duplicates. Each of them either completes or exits 1 naming the run that holds the lock;
afterwards every document of a clean reference run is in MISA exactly once.

MISA answers slowly (``latency_ms``) so the two runs overlap; the second one starts at a
seeded random offset after the first (0 = at the same instant) in each round.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reliability_kit import (HEXAFLOW, MAPPINGS, Sandboxes, assert_same_documents, hexaflow,
                             ledger_rows,
                             ledger_states)

ROUNDS = [0.0, 0.05, 0.3, 1.0]


@pytest.mark.parametrize("offset", ROUNDS)
def test_two_concurrent_runs_write_each_document_once(sandboxes: Sandboxes, reference,
                                                      tmp_path: Path, offset: float, state_target):
    expected = reference(("orders",), 200)
    sandboxes.reset(200)
    sandboxes.faults("misa", latency_ms=60)
    state = state_target
    env = sandboxes.env(state, MISA_SAVE_BATCH="20")
    flow = str(MAPPINGS / "orders.yaml")
    first = subprocess.Popen([HEXAFLOW, "run", flow], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if offset:
        time.sleep(offset)
    second = subprocess.Popen([HEXAFLOW, "run", flow], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outcomes = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=90)
        outcomes.append((proc.returncode, err))
    codes = sorted(code for code, _ in outcomes)
    for code, err in outcomes:
        assert code in (0, 1), err[-2000:]
        if code == 1:
            assert "already running" in err and "orders" in err, err[-2000:]
    assert 0 in codes, outcomes
    sandboxes.faults("misa")
    sandboxes.drain()
    last = hexaflow(["run", flow], env, tmp_path)
    assert last.returncode == 0, last.stderr
    got = sandboxes.misa_snapshot()
    states = ledger_states(state)
    print(f"\nconcurrency offset {offset}s: exit codes {codes}; ledger {dict(states)}")
    assert not states.get("planned") and not states.get("failed"), dict(states)
    assert_same_documents(got, expected)


def test_a_stalled_run_that_lost_its_lock_cannot_commit(sandboxes: Sandboxes, reference,
                                                         tmp_path: Path, state_target):
    """Run A is frozen (SIGSTOP) in the middle of its writes and loses its lock (SQLite: it
    expires, what LOCK_TTL does to a run stalled longer than 600 s; the test sets ``expires_at``
    to 0. PostgreSQL: its lock session ends, what a partition does; the test terminates it); run B
    takes the lock and completes. When A resumes, its fencing number is stale: it must stop
    writing (exit 1, naming the lock), and MISA still holds every document exactly once."""
    expected = reference(("orders",), 200)
    sandboxes.reset(200)
    sandboxes.faults("misa", latency_ms=100)
    state = state_target
    env = sandboxes.env(state, MISA_SAVE_BATCH="5")
    flow = str(MAPPINGS / "orders.yaml")
    a = subprocess.Popen([HEXAFLOW, "run", flow], env=env, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if state.exists() and ledger_rows(state, "state='planned'"):
            break
        time.sleep(0.02)
    else:
        a.kill()
        pytest.fail("run A never planned a document")
    time.sleep(0.2)                      # inside a page's batch of saves
    os.kill(a.pid, signal.SIGSTOP)
    try:
        state.take_lock_from(a.pid)
        sandboxes.faults("misa")
        b = hexaflow(["run", flow], env, tmp_path)
        assert b.returncode == 0, b.stderr[-2000:]
    finally:
        os.kill(a.pid, signal.SIGCONT)
    out, err = a.communicate(timeout=90)
    assert a.returncode in (0, 1), err[-2000:]
    if a.returncode == 1:
        assert "lock" in err, err[-2000:]
    sandboxes.drain()
    last = hexaflow(["run", flow], env, tmp_path)
    assert last.returncode == 0, last.stderr
    got = sandboxes.misa_snapshot()
    states = ledger_states(state)
    print(f"\nstalled run: A exit {a.returncode} ({err.strip().splitlines()[-1:]}), B exit "
          f"{b.returncode}; ledger {dict(states)}")
    assert not states.get("planned") and not states.get("failed"), dict(states)
    assert_same_documents(got, expected)
