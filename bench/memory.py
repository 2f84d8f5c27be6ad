"""Memory: peak RSS of `hexaflow run mappings/orders.yaml` (a subprocess) over 10,000 and over
100,000 Haravan orders, against the sandboxes running in this process, limits off.

    python bench/memory.py [--orders 10000 100000] [--timeout 3600]

For each size: fresh sandboxes (the Haravan shop generates its demo orders lazily from a seed,
so 100,000 orders cost the bench a few tens of MB), a fresh state store, one run with
``HARAVAN_RATE_LIMIT=off`` and ``HEXAFLOW_SETTLE_SECONDS=0``. The peak is the child's own
``ru_maxrss`` from ``wait4`` (cross-checked with ``VmHWM`` sampled from ``/proc`` every
0.2 s). Also printed: RSS when the run made its last Haravan read (the end of reading and
mapping; what follows is the last writes, the poll of MISA's results and exit), the run's wall
time, and the documents MISA received (each must arrive exactly once, and match the ledger).
Prints both peaks and their ratio (target: 100k <= 1.25x the 10k peak).
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import run_hexaflow, start_world  # noqa: E402  (next to this script)


def rss_at(samples: list[tuple[float, int]], seconds: float) -> int:
    """The last RSS sample taken at or before ``seconds`` after the start."""
    before = [rss for at, rss in samples if at <= seconds]
    return before[-1] if before else 0


def measure(orders: int, timeout_s: float) -> dict:
    world = start_world(orders, rate_limit=False)
    try:
        with tempfile.TemporaryDirectory(prefix="hexaflow-memory-") as tmp:
            state = Path(tmp) / "state.db"
            world.haravan_state(reset_counters=True)
            run = run_hexaflow(world, state, timeout_s, HARAVAN_RATE_LIMIT="off",
                               HEXAFLOW_SETTLE_SECONDS="0").check(f"hexaflow run ({orders:,})")
            stats = world.haravan_stats()
            world.misa_drain(timeout_s)
            misa = world.misa_stats()
            with sqlite3.connect(state) as db:
                ledger_vouchers = db.execute(
                    "SELECT count(*) FROM ledger WHERE connector='misa' AND document='voucher'"
                ).fetchone()[0]
    finally:
        world.stop()
    if misa["vouchers_received_twice"] or misa["dictionary_received_twice"]:
        raise SystemExit(f"{orders:,} orders: some documents reached MISA more than once: {misa}")
    if misa["requests"] != ledger_vouchers or misa["vouchers_received"] != ledger_vouchers:
        raise SystemExit(f"{orders:,} orders: MISA holds {misa['requests']} vouchers, the "
                         f"ledger {ledger_vouchers}")
    last_read = (stats["last_request_at"] or run.started_at) - run.started_at
    return {"orders": orders, "seconds": run.seconds, "peak_kb": run.peak_rss_kb,
            "hwm_kb": run.hwm_kb, "at_last_read_kb": rss_at(run.samples, last_read),
            "last_read_s": last_read, "reads": stats["requests"].get("GET /com/orders.json", 0),
            "documents": misa["vouchers_received"] + misa["dictionary_received"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = parser.parse_args()
    results = []
    for orders in args.orders:
        result = measure(orders, args.timeout)
        results.append(result)
        print(f"{orders:>9,} orders: peak RSS {result['peak_kb'] / 1024:7.1f} MiB "
              f"(VmHWM {result['hwm_kb'] / 1024:.1f}); {result['at_last_read_kb'] / 1024:.1f} MiB "
              f"at the last Haravan read ({result['last_read_s']:.1f} s in); run "
              f"{result['seconds']:.1f} s, {result['reads']:,} page reads, "
              f"{result['documents']:,} documents, each once", flush=True)
    if len(results) >= 2:
        small, large = results[0], results[-1]
        ratio = large["peak_kb"] / small["peak_kb"]
        print(f"peak {large['orders']:,} / peak {small['orders']:,}: {ratio:.2f}x (target <= 1.25x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
