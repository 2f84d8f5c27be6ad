"""Fault test (issue 6): with 20 % of the API calls of both sandboxes failing (500, 502, 503,
timeouts, dropped connections, 429), the four flows, run through the CLI and run again while
they exit non-zero (bounded), end with every document exactly once: MISA's requests and
customers, Haravan's products and stock equal those of a fault-free reference run.

Timeouts are real client timeouts: the sandbox holds a "timeout" call for 1.5 s and the
connectors give up after 1 s (``HARAVAN_TIMEOUT_SECONDS``, ``MISA_TIMEOUT_S``, whole seconds).
MISA is written and read in small batches and pages so that it, too, answers many calls.
"""
from __future__ import annotations

import time
from pathlib import Path

from reliability_kit import (MAPPINGS, Sandboxes, assert_same_documents, assert_same_haravan,
                             hexaflow, ledger_states, run_until_done)

FLOWS = ("customers", "products", "inventory", "orders")
KINDS = ["500", "502", "503", "timeout", "drop", "429"]


def test_all_flows_exactly_once_under_20_percent_faults(sandboxes: Sandboxes, reference,
                                                        tmp_path: Path, state_target):
    expected = reference(FLOWS, 200)
    sandboxes.reset(200)
    for which, seed in (("haravan", 11), ("misa", 12)):
        sandboxes.faults(which, error_rate=0.2, kinds=KINDS, timeout_ms=1500, seed=seed,
                         **({"rate_limit": False} if which == "haravan" else {}))
    state = state_target
    env = sandboxes.env(state, HARAVAN_TIMEOUT_SECONDS="1", MISA_TIMEOUT_S="1",
                        HARAVAN_RETRY_BASE_DELAY="0.05",
                        MISA_SAVE_BATCH="10", MISA_DICTIONARY_BATCH="10", MISA_PAGE_SIZE="20")
    started = time.monotonic()
    attempts = {}
    for flow in FLOWS:
        runs = run_until_done(str(MAPPINGS / f"{flow}.yaml"), env, tmp_path, attempts=6)
        attempts[flow] = [r.returncode for r in runs]
    injected = {w: sandboxes.injected(w) for w in ("haravan", "misa")}
    sandboxes.faults("haravan", rate_limit=False)
    sandboxes.faults("misa")
    # After MISA processed everything, a last orders run (no faults) polls and writes nothing new.
    sandboxes.drain()
    last = hexaflow(["run", str(MAPPINGS / "orders.yaml")], env, tmp_path)
    assert last.returncode == 0, last.stderr
    got = sandboxes.misa_snapshot()
    states = ledger_states(state)
    print(f"\nfault test: {time.monotonic() - started:.1f}s, exit codes per flow {attempts}, "
          f"injected {injected}, ledger {dict(states)}")
    assert sum(injected["haravan"].values()) >= 10 and sum(injected["misa"].values()) >= 5, injected
    assert not states.get("planned") and not states.get("failed"), dict(states)
    assert_same_documents(got, expected)
    assert_same_haravan(sandboxes.haravan_state(), expected["haravan"])
