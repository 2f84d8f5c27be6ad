"""Webhook throughput and answer time of ``hexaflow serve`` (Starlette on uvicorn), on one
process with SQLite, or on 1 and then 2 processes sharing one PostgreSQL store.

    python bench/serve.py [--deliveries 2000] [--concurrency 50]
    python bench/serve.py --store postgresql [--postgres URL] [--orders 500]

Starts both sandboxes in this process and ``hexaflow serve`` with the packaged orders flow as
processes of their own (so the load generator does not share their interpreter), scheduler off.
Then ``--concurrency`` client threads, each with one kept-alive connection per serve process,
send ``--deliveries`` signed Haravan ``orders/updated`` webhooks in all, each a new version of an
order (so every one takes the whole receive path: verify, store in the inbox, ask the
dispatcher, answer; the runs they ask for coalesce). Prints deliveries per second and the answer
time's p50 / p95 / max; every answer must be 200 and no connection refused or reset (else exit 1).

``--store sqlite`` (the default): one serve process on a state file; the orders the webhooks
name do not exist in the shop, so the runs they ask for read nothing.

``--store postgresql``: for N = 1, then 2, a fresh database on the server at ``--postgres``
(made and dropped by the bench; default HEXAFLOW_BENCH_POSTGRES, else the development machines'
server), fresh sandboxes holding ``--orders`` real orders, and N serve processes on that one
store, the deliveries spread round-robin over them as a load balancer would. After the load the
bench waits for every order to reach MISA and checks that each did exactly once (one sales
order per order, no voucher saved twice), then prints both rows and the ratio of 2 to 1.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx

from hexaflow.connectors.commands import start_sandboxes
from hexaflow.connectors.haravan.webhooks import sign

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {"HARAVAN_TOKEN": "bench-token", "HARAVAN_WEBHOOK_SECRET": "bench-webhook-secret",
               "MISA_APP_ID": "bench-app", "MISA_ACCESS_CODE": "bench-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
START_S = 30.0
STOP_S = 60.0
LOAD_S = 300.0
SETTLE_S = 300.0          # for every order to reach MISA after the load
SALES_ORDER = 20          # MISA's voucher_type of a sales order
ITEM = {"dictionary_type": 3, "inventory_item_code": "AO-THUN-M", "inventory_item_name": "Áo thun cotton",
        "inventory_item_type": 0, "unit_name": "Cái", "unit_price": 250000}

Answers = list[tuple[int | str, float]]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def start_serve(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "hexaflow.cli", "serve",
                             str(ROOT / "mappings" / "orders.yaml"), "--port", "0", "--interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + START_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on" in line:
            # the rest of what it prints is not read: a full pipe must not block it
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, line.split("listening on ", 1)[1].split()[0]
    proc.kill()
    raise SystemExit("hexaflow serve did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_serves(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def deliver(urls: list[str], bodies: list[tuple[int, bytes]], answers: Answers) -> None:
    """Send each (number, body) to ``urls[number % len(urls)]``: round-robin over the serve
    processes, each on a kept-alive connection of this thread."""
    clients = [httpx.Client(timeout=30) for _ in urls]
    try:
        for number, raw in bodies:
            headers = {"Content-Type": "application/json", "X-Haravan-Topic": "orders/updated",
                       "X-Haravan-Hmacsha256": sign(raw, CREDENTIALS["HARAVAN_WEBHOOK_SECRET"])}
            began = time.perf_counter()
            try:
                status: int | str = clients[number % len(urls)].post(
                    urls[number % len(urls)], content=raw, headers=headers).status_code
            except httpx.TransportError as exc:
                status = type(exc).__name__
            answers.append((status, time.perf_counter() - began))
    finally:
        for client in clients:
            client.close()


def load(urls: list[str], bodies: list[bytes], concurrency: int) -> tuple[Answers, float]:
    """(answers, wall seconds) of sending every body over ``concurrency`` threads."""
    answers: Answers = []
    numbered = list(enumerate(bodies))
    threads = [threading.Thread(target=deliver, args=(urls, numbered[n::concurrency], answers))
               for n in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    deadline = time.monotonic() + LOAD_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return answers, time.perf_counter() - began


def versions(order_ids: list[int], deliveries: int) -> list[bytes]:
    """``deliveries`` webhook bodies, each a new version (``updated_at``) of one of the orders."""
    return [json.dumps({"id": order_ids[i % len(order_ids)], "updated_at":
                        f"2026-11-27T10:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}0Z"}).encode()
            for i in range(deliveries)]


def report(processes: int, answers: Answers, wall: float,
           args: argparse.Namespace) -> tuple[float, str | None]:
    """Print the figures of one load; (deliveries/s, what went wrong or None)."""
    seconds = [t for _, t in answers]
    rate = len(answers) / wall
    print(f"{processes} serve process{'es' if processes > 1 else ''}: {len(answers)} deliveries, "
          f"{args.concurrency} concurrent clients: {rate:.0f} deliveries/s; answer p50 "
          f"{percentile(seconds, 50) * 1000:.1f} ms, p95 {percentile(seconds, 95) * 1000:.1f} ms, "
          f"max {max(seconds) * 1000:.1f} ms", flush=True)
    statuses = [s for s, _ in answers]
    bad = {s: statuses.count(s) for s in set(statuses) if s != 200}
    if bad or len(answers) != args.deliveries:
        return rate, f"answers other than 200: {bad}; {args.deliveries - len(answers)} unanswered"
    return rate, None


def bench_sqlite(args: argparse.Namespace) -> int:
    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url,
               "HEXAFLOW_STATE": str(Path(tmp) / "state.db")}
        proc, url = start_serve(env)
        try:
            bodies = versions(list(range(5_000_000, 5_000_500)), args.deliveries)
            answers, wall = load([f"{url}/hooks/haravan"], bodies, args.concurrency)
        finally:
            stop_serves([proc])
            haravan.stop()
            misa.stop()
    _, problem = report(1, answers, wall, args)
    print("2 serve processes: see --store postgresql (two processes need a shared PostgreSQL store)")
    if problem:
        print(f"FAILED: {problem}")
        return 1
    return 0


@contextmanager
def fresh_database(admin_url: str, name: str) -> Iterator[str]:
    """A new database on the server of ``admin_url``, dropped afterwards; yields its URL."""
    import psycopg
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Shop:
    """Fresh sandboxes: a company with the item the orders sell, a shop with real orders."""

    def __init__(self, orders: int):
        self.haravan, self.misa, self.creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                                              credentials=dict(CREDENTIALS))
        self.http = httpx.Client(timeout=30)
        answer = self.http.post(f"{self.misa.url}/_sandbox/dictionary", json={"dictionary": [ITEM]})
        answer.raise_for_status()
        auth = {"Authorization": f"Bearer {self.creds['HARAVAN_TOKEN']}"}
        customer = self.http.post(f"{self.haravan.url}/com/customers.json", headers=auth, json={
            "customer": {"first_name": "Lan", "last_name": "Nguyễn", "email": "lan@example.com",
                         "phone": "0909123456"}}).json()["customer"]
        line = {"sku": ITEM["inventory_item_code"], "title": ITEM["inventory_item_name"],
                "price": ITEM["unit_price"], "quantity": 1}
        self.order_ids = []
        for _ in range(orders):
            answer = self.http.post(f"{self.haravan.url}/com/orders.json", headers=auth, json={"order": {
                "gateway": "Bank transfer", "customer": {"id": customer["id"]}, "line_items": [line]}})
            answer.raise_for_status()
            self.order_ids.append(answer.json()["order"]["id"])

    def sales_orders(self) -> dict[str, int]:
        """Haravan order id → sales orders MISA holds for it."""
        held: dict[str, int] = {}
        for row in self.http.get(f"{self.misa.url}/_sandbox/requests").json()["requests"]:
            if row["voucher_type"] == SALES_ORDER:
                held[str(row["org_refno"])] = held.get(str(row["org_refno"]), 0) + 1
        return held

    def vouchers_saved_and_held(self) -> tuple[int, int]:
        calls = self.http.get(f"{self.misa.url}/_sandbox/calls").json()["calls"]
        saved = sum(c.get("vouchers", 0) for c in calls if c["function"] == "save")
        return saved, len(self.http.get(f"{self.misa.url}/_sandbox/requests").json()["requests"])

    def stop(self) -> None:
        self.http.close()
        self.haravan.stop()
        self.misa.stop()


def once_in_misa(shop: Shop) -> str | None:
    """Wait (bounded) for every order to reach MISA; what is wrong, or None."""
    wanted = {str(i) for i in shop.order_ids}
    deadline = time.monotonic() + SETTLE_S
    while not wanted <= set(shop.sales_orders()):
        if time.monotonic() > deadline:
            return f"after {SETTLE_S:g} s, {len(wanted - set(shop.sales_orders()))} orders not in MISA"
        time.sleep(0.5)
    return None


def counted_once(shop: Shop) -> str | None:
    held = shop.sales_orders()
    twice = {order: n for order, n in held.items() if n != 1}
    saved, rows = shop.vouchers_saved_and_held()
    if twice or set(held) != {str(i) for i in shop.order_ids} or saved != rows:
        return (f"sales orders not once each: {dict(list(twice.items())[:5])}; "
                f"{len(held)} orders held for {len(shop.order_ids)} made; "
                f"{saved} vouchers saved for {rows} held")
    return None


def bench_postgresql(args: argparse.Namespace) -> int:
    rates: dict[int, float] = {}
    problems: list[str] = []
    for processes in (1, 2):
        shop = Shop(args.orders)
        try:
            with fresh_database(args.postgres, f"hexaflow_bench_serve_{os.getpid()}_{processes}") as url:
                env = {**os.environ, **shop.creds, "HARAVAN_BASE_URL": shop.haravan.url,
                       "MISA_BASE_URL": shop.misa.url, "HEXAFLOW_STATE": url,
                       # a run re-reads only what changed, and ends without waiting for MISA's results
                       "HARAVAN_OVERLAP_SECONDS": "0", "HEXAFLOW_SETTLE_SECONDS": "0"}
                procs: list[subprocess.Popen] = []
                try:
                    urls = []
                    for _ in range(processes):
                        proc, base = start_serve(env)
                        procs.append(proc)
                        urls.append(f"{base}/hooks/haravan")
                    serve_cpu = sum(cpu_seconds(p.pid) for p in procs)
                    own_cpu = time.process_time()
                    answers, wall = load(urls, versions(shop.order_ids, args.deliveries), args.concurrency)
                    serve_cpu = sum(cpu_seconds(p.pid) for p in procs) - serve_cpu
                    own_cpu = time.process_time() - own_cpu
                    rates[processes], problem = report(processes, answers, wall, args)
                    # where the two cores went during the load: the serve processes, and this
                    # process (the clients and both sandboxes); PostgreSQL has the rest
                    print(f"  CPU during the load ({wall:.1f} s): serve {serve_cpu:.1f} s, "
                          f"load generator and sandboxes {own_cpu:.1f} s", flush=True)
                    problem = problem or once_in_misa(shop)
                finally:
                    stop_serves(procs)
                problem = problem or counted_once(shop)
                if problem:
                    problems.append(f"{processes} process(es): {problem}")
                else:
                    print(f"  each of the {len(shop.order_ids)} orders is in MISA once", flush=True)
        finally:
            shop.stop()
    print(f"2 processes / 1 process: {rates[2] / rates[1]:.2f}× the deliveries/s "
          f"({os.cpu_count()} cores on this machine)")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres", default=os.environ.get("HEXAFLOW_BENCH_POSTGRES") or DEFAULT_POSTGRES,
                        help="PostgreSQL server to make the bench's databases on (--store postgresql)")
    parser.add_argument("--orders", type=int, default=500,
                        help="orders in the shop, which the deliveries name (--store postgresql)")
    args = parser.parse_args()
    if args.store == "postgresql":
        return bench_postgresql(args)
    return bench_sqlite(args)


if __name__ == "__main__":
    sys.exit(main())
