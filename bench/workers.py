"""Documents/s of 1, 2 and 4 ``hexaflow worker`` processes over many shops, against the sum of
the shops' Haravan bucket bounds.

    python bench/workers.py [--shops 10] [--orders 400] [--workers 1 2 4] [--concurrency 4]
                            [--postgres URL] [--timeout 900] [--keep-logs DIR]

Each round (one per ``--workers`` count) starts from the same data: ``--shops`` Haravan + MISA
sandbox pairs in this process, with their demo data (``--orders`` orders per shop, seed = the
shop's number, so shops differ and rounds repeat), each with its own credentials and Haravan's
real bucket (80 calls, draining 4/s; the bucket empty at the start); a tenants folder with one
tenant per shop made by ``hexaflow.scaffold.add_tenant`` (the four packaged flows, a
tenant.yaml naming its sandboxes, a secrets file); and a fresh PostgreSQL database on
``--postgres`` (made and dropped by the bench; default HEXAFLOW_BENCH_POSTGRES, else the
development machines' server). One run per (tenant, flow) is deferred with
``hexaflow.queue.schedule_all``, then the clock starts and N ``hexaflow worker --tenants DIR
--interval 0`` processes are spawned (``HEXAFLOW_SETTLE_SECONDS=0``: a run does not wait for
MISA's results). The clock stops when no flow job is left waiting or running: every run has sent
what it had to. Then each shop is checked: every order not cancelled has a voucher in its MISA
company, no voucher was received twice, all were accepted, and each round left the same vouchers
as the first. (bench/orders_by_hand.py, which bench/e2e.py checks against, maps an older
orders flow than the one in mappings/ and is not used here.)

Printed per round: wall time, documents MISA received (vouchers and dictionary entries: customers
from both flows), documents/s, the Haravan calls made (and the 429s answered), the ceiling —
the sum over shops of the bucket's bound, 80 + 4·t calls in t seconds — and the calls made as a
share of it (the documents/s ceiling is that bound times the documents a Haravan call brought
in: the same share), the CPU seconds of the workers and of this process (the 2·N sandboxes),
the most sessions the workers held on the database at once, and the load average. It also
prints when the first run began and the last ended: before the first is the workers'
start-up (interpreter, imports, loading and compiling every tenant's flows), which grows with
tenants × workers on a busy machine. No timed assertion: the figures are printed; a wrong
document count exits 1.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from e2e import World, hexaflow_command, snapshot  # noqa: E402
from serve import DEFAULT_POSTGRES, cpu_seconds, fresh_database  # noqa: E402

BUCKET, LEAK = 80, 4.0                 # Haravan's bucket: 80 calls, draining 4 per second
MISA_APP_ID = "bench-partner-app"      # the integrator's MISA app, one for every shop
POLL_S = 0.5
STOP_S = 60.0


def credentials(shop: int) -> dict[str, str]:
    return {"HARAVAN_TOKEN": f"bench-token-{shop:03d}-0123456789",
            "HARAVAN_WEBHOOK_SECRET": f"bench-hook-{shop:03d}-secret", "MISA_APP_ID": MISA_APP_ID,
            "MISA_ACCESS_CODE": f"bench-access-{shop:03d}-code",
            "MISA_ORG_COMPANY_CODE": f"0312{shop:06d}"}


@dataclass
class Shop:
    name: str
    world: World
    orders: set[str]                   # the ids of the shop's orders not cancelled


def start_shops(count: int, orders: int, tenants: Path) -> list[Shop]:
    """``count`` sandbox pairs with the demo data, and a tenant folder for each."""
    from hexaflow.connectors.commands import start_sandboxes
    from hexaflow.scaffold import add_tenant
    shops: list[Shop] = []
    secrets_dir = tenants / ".secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        creds = credentials(n)
        haravan, misa, _ = start_sandboxes(data="demo", orders=orders, rate_limit=True, seed=n + 1,
                                           credentials=dict(creds))
        world = World(haravan, misa, creds)
        name = f"shop-{n:03d}"
        add_tenant(tenants, name)
        secrets = secrets_dir / f"{name}.env"
        secrets.write_text("".join(f"{k}={creds[k]}\n" for k in
                                   ("HARAVAN_TOKEN", "HARAVAN_WEBHOOK_SECRET", "MISA_ACCESS_CODE")))
        secrets.chmod(0o600)
        (tenants / name / "tenant.yaml").write_text(
            f"description: bench shop {n}\n"
            f"environment:\n"
            f"  HARAVAN_BASE_URL: {haravan.url}\n"
            f"  MISA_BASE_URL: {misa.url}\n"
            f"  MISA_ORG_COMPANY_CODE: '{creds['MISA_ORG_COMPANY_CODE']}'\n"
            f"secrets: ../.secrets/{name}.env\n")
        held = haravan.app.shop.orders
        live = {str(i) for i in list(held.ids) if held.get(i)["cancelled_status"] != "cancelled"}
        shops.append(Shop(name, world, live))
    return shops


def queue_first_runs(state: str, tenants: Path) -> int:
    """The state store's and the queue's schemas, and one waiting run per (tenant, flow)."""
    from hexaflow import queue
    from hexaflow.state import open_store
    open_store(state).close()
    queue.ensure_schema(state)
    held = queue.worker_tenants([], str(tenants), None)
    app = queue.make_app(state)
    with app.open():
        return queue.schedule_all(app, held)


def flow_jobs_left(conn: Any) -> tuple[int, int]:
    """Flow jobs waiting or running (the sweeper's periodic jobs are not counted), and the
    sessions the other processes hold on the database now."""
    from hexaflow import queue
    row = conn.execute("SELECT (SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND "
                       "status IN ('todo', 'doing')), (SELECT count(*) FROM pg_stat_activity WHERE "
                       "datname = current_database() AND pid <> pg_backend_pid())",
                       (queue.TASK,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def flow_runs(state: str, tenants: list[str], spawned: float) -> dict[str, float]:
    """How many runs the workers made, and when the first began and the last ended, in
    seconds from the workers' spawn (what comes before the first is their start-up)."""
    from hexaflow.state import open_store
    store = open_store(state)
    try:
        runs = [r for t in tenants for r in store.runs(t, limit=10_000)]
    finally:
        store.close()
    return {"count": len(runs), "first": min(float(r["started_at"]) for r in runs) - spawned,
            "last": max(float(r["finished_at"] or 0) for r in runs) - spawned,
            "failed": sum(1 for r in runs if r["status"] != "ok")}


def orders_missing(shops: list[Shop]) -> int:
    """Orders not cancelled of which their shop's MISA company holds no voucher."""
    missing = 0
    for shop in shops:
        held = {str(r["org_refno"]) for r in shop.world.misa_requests()}
        missing += len(shop.orders - held)
    return missing


def check(shop: Shop) -> tuple[list[str], frozenset[str], int]:
    """What is wrong with the shop's MISA company after the round (nothing: []), the keys of
    the vouchers it holds (every round must leave the same), and the customers sent twice: by
    the customers flow and by an orders run that found it not yet in MISA (an upsert by code,
    which the sandbox counts but which leaves one customer)."""
    snap = snapshot(shop.world)
    problems = []
    if snap.received_twice or snap.received != len(snap.vouchers):
        problems.append(f"{snap.received} vouchers received for {len(snap.vouchers)} keys")
    rejected = {s: n for s, n in snap.statuses.items() if s != "accepted"}
    if rejected:
        problems.append(f"not accepted by MISA: {rejected}")
    return ([f"{shop.name}: {p}" for p in problems], frozenset(snap.vouchers),
            snap.dictionary_received_twice)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def one_round(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    with tempfile.TemporaryDirectory(prefix="hexaflow-bench-workers-") as tmp:
        tenants = Path(tmp) / "tenants"
        shops = start_shops(args.shops, args.orders, tenants)
        try:
            database = f"hexaflow_bench_workers_{os.getpid()}_{workers}"
            with fresh_database(args.postgres, database) as state:
                queued = queue_first_runs(state, tenants)
                env = {k: v for k, v in os.environ.items()
                       if not k.startswith(("HARAVAN_", "MISA_", "HEXAFLOW_"))}
                env.update(HEXAFLOW_STATE=state, MISA_APP_ID=MISA_APP_ID, PYTHONUNBUFFERED="1",
                           # a run ends without waiting for MISA's results (as bench/e2e.py)
                           HEXAFLOW_SETTLE_SECONDS="0")
                logs = [open(Path(tmp) / f"worker-{i}.log", "w") for i in range(workers)]
                load_before = load_average()
                own_cpu = time.process_time()
                began, spawned = time.perf_counter(), time.time()
                procs = [subprocess.Popen([*hexaflow_command(), "worker", "--tenants", str(tenants),
                                           "--interval", "0", "--concurrency", str(args.concurrency)],
                                          env=env, stdout=logs[i], stderr=subprocess.STDOUT)
                         for i in range(workers)]
                poll = psycopg.connect(state, autocommit=True)
                sessions = 0
                try:
                    deadline = time.monotonic() + args.timeout
                    # When no flow job waits or runs, every run has sent what it had to
                    # (HEXAFLOW_SETTLE_SECONDS=0: none waits for MISA's results).
                    while True:
                        left, now_open = flow_jobs_left(poll)
                        sessions = max(sessions, now_open)
                        if not left:
                            break
                        if time.monotonic() > deadline:
                            raise SystemExit(f"{workers} worker(s): {left} flow jobs left after "
                                             f"{args.timeout:g} s")
                        gone = [i for i, p in enumerate(procs) if p.poll() is not None]
                        if gone:
                            log_text = (Path(tmp) / f"worker-{gone[0]}.log").read_text()
                            raise SystemExit(f"worker {gone[0]} exited: {log_text[-3000:]}")
                        time.sleep(POLL_S)
                    wall = time.perf_counter() - began
                    worker_cpu = sum(cpu_seconds(p.pid) for p in procs)
                    own_cpu = time.process_time() - own_cpu
                    load_after = load_average()
                    missing = orders_missing(shops)
                finally:
                    poll.close()
                    stop_workers(procs)
                    for log in logs:
                        log.close()
                    if args.keep_logs:
                        kept = Path(args.keep_logs) / f"{workers}-workers"
                        kept.mkdir(parents=True, exist_ok=True)
                        for i in range(workers):
                            (kept / f"worker-{i}.log").write_text((Path(tmp) / f"worker-{i}.log").read_text())
                runs = flow_runs(state, [shop.name for shop in shops], spawned)
            checked = [check(shop) for shop in shops]
            problems = [p for found, _, _ in checked for p in found]
            if missing:
                problems.append(f"{missing} orders not cancelled have no voucher in MISA")
            haravan = [shop.world.haravan_stats() for shop in shops]
            misa = [shop.world.misa_stats() for shop in shops]
        finally:
            for shop in shops:
                shop.world.stop()
    calls = sum(h["calls"] for h in haravan)
    documents = sum(m["vouchers_received"] + m["dictionary_received"] for m in misa)
    ceiling = args.shops * (BUCKET + LEAK * wall)
    return {"workers": workers, "queued": queued, "wall": wall, "documents": documents,
            "vouchers": sum(m["vouchers_received"] for m in misa), "calls": calls,
            "throttled": sum(h["throttled"] for h in haravan), "ceiling": ceiling,
            "worker_cpu": worker_cpu, "own_cpu": own_cpu, "load": (load_before, load_after),
            "problems": problems, "keys": [keys for _, keys, _ in checked],
            "customers_twice": sum(twice for _, _, twice in checked), "runs": runs,
            "sessions": sessions}


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    rate = r["documents"] / r["wall"]
    share = r["calls"] / r["ceiling"]
    ceiling_rate = rate / share if share else float("inf")
    print(f"{r['workers']} worker{'s' if r['workers'] > 1 else ''} × concurrency {args.concurrency}: "
          f"{r['wall']:.1f} s, {r['documents']:,} documents ({r['vouchers']:,} vouchers), "
          f"{rate:.1f} documents/s", flush=True)
    runs = r["runs"]
    span = runs["last"] - runs["first"]
    print(f"  {runs['count']} runs ({runs['failed']} not ok) from {runs['first']:.1f} s to "
          f"{runs['last']:.1f} s after the spawn (before: the workers' start-up, loading and "
          f"compiling every tenant's flows): {r['documents'] / span:.1f} documents/s over those "
          f"{span:.1f} s", flush=True)
    print(f"  Haravan: {r['calls']:,} calls ({r['throttled']} answered 429); ceiling "
          f"{args.shops} × (80 + 4·{r['wall']:.1f} s) = {r['ceiling']:,.0f} calls: "
          f"{share:.3f} of it (documents/s ceiling at {r['documents'] / max(1, r['calls']):.1f} "
          f"documents a call: {ceiling_rate:,.0f})", flush=True)
    print(f"  PostgreSQL: at most {r['sessions']} sessions of the workers at once "
          f"({r['sessions'] / r['workers']:.1f} a worker)", flush=True)
    print(f"  CPU: workers {r['worker_cpu']:.1f} s, bench process (the {2 * args.shops} sandboxes) "
          f"{r['own_cpu']:.1f} s, of {os.cpu_count()} × {r['wall']:.1f} s; load average "
          f"before {r['load'][0]}, after {r['load'][1]}", flush=True)
    for problem in r["problems"]:
        print(f"  FAILED: {problem}", flush=True)
    if not r["problems"]:
        print(f"  every order not cancelled has its vouchers; each voucher reached MISA once, "
              f"all accepted, the same vouchers as the first round ({r['queued']} runs queued "
              f"at the start; {r['customers_twice']} customers sent by both flows)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shops", type=int, default=10)
    parser.add_argument("--orders", type=int, default=400, help="demo orders per shop")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=4, help="runs per worker at once")
    parser.add_argument("--postgres", default=os.environ.get("HEXAFLOW_BENCH_POSTGRES") or DEFAULT_POSTGRES,
                        help="PostgreSQL server to make the bench's databases on")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the workers' logs into DIR")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per round at most")
    args = parser.parse_args()
    print(f"bench/workers.py: {args.shops} shops × {args.orders} demo orders, Haravan bucket "
          f"{BUCKET} / {LEAK:g} per s per shop; {os.cpu_count()} CPUs, load average "
          f"{load_average()}", flush=True)
    results: list[dict[str, Any]] = []
    for workers in args.workers:
        results.append(one_round(workers, args))
        if results[-1]["keys"] != results[0]["keys"]:
            results[-1]["problems"].append(f"the vouchers in MISA differ from the "
                                           f"{results[0]['workers']}-worker round's")
        report(results[-1], args)
    base = results[0]["documents"] / results[0]["wall"]
    print("documents/s relative to the first row: " + ", ".join(
        f"{r['workers']}: {r['documents'] / r['wall'] / base:.2f}×" for r in results), flush=True)
    return 1 if any(r["problems"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
