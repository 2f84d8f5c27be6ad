"""How many token statements per second the shared rate limit (hexaflow.ratelimit_pg) sustains
on a PostgreSQL state store, against what hexaflow needs of it.

    python bench/rate_limit.py [--url postgresql://postgres@127.0.0.1:5432/test] [--seconds 5]

Makes a database of its own next to ``--url`` (default HEXAFLOW_TEST_POSTGRES, else the
development server), migrates it, and runs 1, 2 and 4 processes that each take tokens as fast
as they can from a bucket so large that every statement grants one (the statement a call to an
API costs, row write included):

- *one shop*: every process on the same row, the worst case (they queue on its row lock);
- *a shop each*: each process on its own row, as many shops spread over processes are.

Prints statements/s and the latency of one statement (p50, p99). ``--durable`` commits each
token synchronously (the server's default; the limiter's session turns it off). The need: a shop's Haravan
bucket drains 4 calls/s, so 100 shops at full speed are 400 token statements/s, plus the
``observe`` after each answer (one more per call) and, while callers wait, one more per
waiter each time a token frees. The database is dropped at the end.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = os.environ.get("HEXAFLOW_TEST_POSTGRES") or "postgresql://postgres@127.0.0.1:5432/test"
HUGE = 10 ** 9


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _taker(url: str, account: str, seconds: float, barrier: Any, results: Any,
           durable: bool) -> None:
    from hexaflow import ratelimit_pg
    from hexaflow.http import RateLimiter
    from hexaflow.ratelimit_pg import SharedRateLimiter

    if durable:                                # each commit waits for the WAL flush
        ratelimit_pg.ASYNC_COMMIT = ""

    limiter = SharedRateLimiter(url, "bench", account, RateLimiter(HUGE, float(HUGE), headroom=0))
    limiter.acquire()                          # connected, row made: not part of the timing
    barrier.wait(timeout=60)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while True:
        started = time.perf_counter()
        if started >= deadline:
            break
        limiter.acquire()
        latencies.append(time.perf_counter() - started)
    if limiter.local._level:                   # a token from the fallback: the store failed
        results.put(("failed", account))
        return
    results.put((len(latencies), latencies))


def run(url: str, processes: int, same_row: bool, seconds: float,
        durable: bool) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=_taker, args=(url, "one-shop" if same_row else f"shop-{i}",
                                              seconds, barrier, results, durable))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    failed = [g for g in got if g[0] == "failed"]
    if failed:
        sys.exit(f"the store failed during the bench ({failed}); see the warnings above")
    latencies = sorted(x for _n, lat in got for x in lat)
    total = sum(n for n, _lat in got)
    return {"per_s": total / seconds, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a PostgreSQL server (its admin URL)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--durable", action="store_true",
                        help="commit each token synchronously (the server's default), to see "
                             "what the limiter's synchronous_commit=off saves")
    args = parser.parse_args()

    import psycopg

    from hexaflow.state import open_store
    name = f"hexaflow_bench_limits_{os.getpid()}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        version = conn.execute("SHOW server_version").fetchone()
    url = _with_database(args.url, name)
    try:
        open_store(url).close()
        print(f"PostgreSQL {version[0] if version else '?'}, {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.1f}, {args.seconds:g} s per line, synchronous_commit "
              f"{'on' if args.durable else 'off'}")
        print(f"{'processes':>9}  {'bucket':<11} {'statements/s':>12} {'p50 ms':>7} {'p99 ms':>7}")
        for processes in (1, 2, 4):
            for same_row in (True, False):
                figures = run(url, processes, same_row, args.seconds, args.durable)
                print(f"{processes:>9}  {'one shop' if same_row else 'a shop each':<11} "
                      f"{figures['per_s']:>12,.0f} {figures['p50_ms']:>7.2f} {figures['p99_ms']:>7.2f}")
        print("need: 4 statements/s per shop taking tokens at full speed (Haravan's bucket), "
              "about twice that with each answer's observe")
    finally:
        from hexaflow.ratelimit_pg import close_sessions
        from hexaflow.state_pg import close_pools
        close_sessions()
        close_pools()
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
