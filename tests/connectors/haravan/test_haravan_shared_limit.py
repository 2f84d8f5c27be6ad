"""Issue 16's Rate line: four processes calling one shop through one PostgreSQL state store
keep to the shop's one bucket — 0 × 429 from the sandbox (rate limit on: 80 calls, 4/s) and at
least 0.95 × (80 + 4·t) calls over t = 30 s — and after one 429 with ``Retry-After: 2`` none of
them calls the shop inside the 2 s. Each process is a real one (shared_limit_caller.py) reading
a different resource, as the customers, products, orders and inventory flows would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hexaflow.state import open_store
from state_backends import make_target

CALLER = Path(__file__).with_name("shared_limit_caller.py")
PATHS = ("/customers.json", "/products.json", "/orders.json", "/locations.json")
WINDOW_S = 30.0                  # the t
RUN_S = WINDOW_S + 6.0           # then the forced 429 and its 2 s, with the callers still asking


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_four_processes_share_one_bucket_and_one_retry_after(make_shop, request, tmp_path):
    target = make_target("postgresql", tmp_path, request)
    open_store(str(target)).close()
    shop = make_shop(data="empty", rate_limit=True)            # Haravan's numbers: 80, 4/s
    env = {**os.environ, "HEXAFLOW_STATE": str(target), "HARAVAN_BASE_URL": shop.url,
           "HARAVAN_TOKEN": shop.token, "HARAVAN_RETRY_BASE_DELAY": "0.05"}
    env.pop("HARAVAN_BUCKET_AT_START", None)                   # the default: assume it full
    procs = [subprocess.Popen([sys.executable, str(CALLER), path, str(RUN_S)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for path in PATHS]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        _wait_for(lambda: shop.app.call_log, 30, "the first call")
        first = shop.app.call_log[0][0]
        _wait_for(lambda: time.time() > first + WINDOW_S + 0.5, WINDOW_S + 30, "the window's end")
        shop.admin("POST", "/faults", json={"error_rate": 1.0, "kinds": ["429"], "count": 1,
                                            "retry_after": 2})
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=RUN_S + 30)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    calls = list(shop.app.call_log)
    assert calls[0][0] == first
    window = [status for at, _m, _p, status in calls if at <= first + WINDOW_S]
    bound = 80 + 4 * WINDOW_S
    assert shop.app.throttled == 0                             # the bucket never refused one
    assert window.count(200) == len(window)
    assert 0.95 * bound <= len(window) <= bound, (len(window), bound)
    # Every process called; the one 429 was retried, and none of them was refused otherwise.
    assert all(r["statuses"].get("200", 0) > 0 for r in results), results
    assert sum(r["statuses"].get("429", 0) for r in results) == 0
    forced = [at for at, _m, _p, status in calls if status == 429]
    assert len(forced) == 1
    inside = [round(at - forced[0], 3) for at, *_ in calls if forced[0] < at < forced[0] + 2.0]
    assert inside == [], f"calls {inside} s after the 429 that asked for 2 s"
    after = [at for at, *_ in calls if at > forced[0]]
    assert after, "the callers stopped before the Retry-After ended"
    print(f"{len(window)} calls in {WINDOW_S:g} s (bound {bound:g}), 0 refused by the bucket; "
          f"the first call after the forced 429 came {after[0] - forced[0]:.3f} s later")
