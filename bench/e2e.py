"""End to end: N Haravan orders → `hexaflow run mappings/orders.yaml` (the real CLI, in a
subprocess) → MISA, against the sandboxes running in this process on loopback.

    python bench/e2e.py [--orders 2000] [--limits on|off] [--repeat N] [--settle S]

Both sandboxes start with their demo data (the Haravan shop with N generated orders, customers
and products; the MISA company with its items and warehouses). After each hexaflow run the
bench checks, in the MISA sandbox, that every document the orders call for (each order mapped
by ``bench/orders_by_hand.py``, the flow written by hand) arrived exactly once — vouchers by
their key (``refno_finance``), customers by code — and nothing else did; then a second run
must write nothing.

``--limits on`` (default): Haravan's real bucket (80 calls, 4/s) in the sandbox and in the
client. The bench fills the sandbox's bucket before the run (``POST /_sandbox/state
{"bucket_level": 80}``: another client, or ``serve``, just used it), so the run is in steady
state from its first call and the bound is ``page reads / 4 s``; the bound from an empty
bucket, ``max(0, reads − 80) / 4``, is printed for reference. Prints the run's wall time, the
page reads (the sandbox's request log), the bound, wall / bound, and the 429s the sandbox
answered.

``--limits off``: no bucket in the sandbox nor in the client (``HARAVAN_RATE_LIMIT=off``). Runs
hexaflow and ``bench/plain_httpx.py`` (the same reads, mapping by hand and MISA writes with
plain sequential httpx) alternately ``--repeat`` times, each on a fresh MISA company, checks
both leave the same documents, and prints documents/s of each (best run).

Wall time is the subprocess's, start to exit: interpreter start-up, imports, compiling the
flow, reading, mapping, the ledger, writing to MISA and, with ``--settle 0`` (the default,
``HEXAFLOW_SETTLE_SECONDS``), one poll of MISA's results at the end. MISA processes its queue
in the background; the bench waits for it to drain after the run, outside the wall time.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
FLOW = ROOT / "mappings" / "orders.yaml"
CREDENTIALS = {"HARAVAN_TOKEN": "bench-token", "HARAVAN_WEBHOOK_SECRET": "bench-webhook-secret",
               "MISA_APP_ID": "bench-app", "MISA_ACCESS_CODE": "bench-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
BUCKET, LEAK = 80, 4.0                 # Haravan's documented bucket
ORDERS_PATH = "GET /com/orders.json"
HTTP_TIMEOUT_S = 120.0


def hexaflow_command() -> list[str]:
    exe = Path(sys.executable).parent / "hexaflow"
    return [str(exe) if exe.exists() else (shutil.which("hexaflow") or "hexaflow")]


# --------------------------------------------------------------------------- the sandboxes
@dataclass
class World:
    """Both sandboxes, in this process, and an HTTP client for their admin routes."""
    haravan: Any
    misa: Any
    creds: dict[str, str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=HTTP_TIMEOUT_S))

    def env(self, state_path: Path, **extra: str) -> dict[str, str]:
        """The environment of a run: this process's, minus any HARAVAN_/MISA_/HEXAFLOW_
        setting of the caller's, plus the sandboxes' URLs and credentials."""
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("HARAVAN_", "MISA_", "HEXAFLOW_"))}
        return {**base, **self.creds, "HARAVAN_BASE_URL": self.haravan.url,
                "MISA_BASE_URL": self.misa.url, "HEXAFLOW_STATE": str(state_path),
                "PYTHONUNBUFFERED": "1", **extra}

    def haravan_state(self, **body: Any) -> dict[str, Any]:
        return self._json("POST", f"{self.haravan.url}/_sandbox/state", json=body)

    def haravan_stats(self) -> dict[str, Any]:
        return self._json("GET", f"{self.haravan.url}/_sandbox/stats")

    def misa_stats(self) -> dict[str, Any]:
        return self._json("GET", f"{self.misa.url}/_sandbox/stats")

    def misa_requests(self) -> list[dict[str, Any]]:
        return self._json("GET", f"{self.misa.url}/_sandbox/requests")["requests"]

    def misa_reset(self) -> None:
        self._json("POST", f"{self.misa.url}/_sandbox/reset", json={"data": "demo"})

    def misa_drain(self, timeout_s: float = 600.0) -> None:
        """Wait until MISA processed every queued call (the drain route waits 60 s at most)."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.http.post(f"{self.misa.url}/_sandbox/drain", json={"timeout_s": 60})
            if answer.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"MISA sandbox still busy after {timeout_s:g} s")

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        answer = self.http.request(method, url, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.http.close()
        self.haravan.stop()
        self.misa.stop()
        self.misa.app.close()


def start_world(orders: int, rate_limit: bool) -> World:
    from hexaflow.connectors.commands import start_sandboxes
    haravan, misa, creds = start_sandboxes(data="demo", orders=orders, rate_limit=rate_limit,
                                           credentials=dict(CREDENTIALS))
    return World(haravan, misa, creds)


# --------------------------------------------------------------------------- one subprocess
@dataclass
class Run:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_kb: int             # the child's own ru_maxrss (wait4), KiB on Linux
    hwm_kb: int                  # highest VmHWM sampled from /proc (0 if never sampled)
    samples: list[tuple[float, int]]    # (seconds since start, VmRSS KiB)
    started_at: float = 0.0              # epoch seconds at spawn

    def check(self, what: str) -> "Run":
        if self.returncode != 0:
            sys.stderr.write(self.stdout[-3000:] + self.stderr[-3000:])
            raise SystemExit(f"{what} exited with {self.returncode}")
        return self


def run_measured(command: list[str], env: dict[str, str], timeout_s: float,
                 sample_every: float = 0.1) -> Run:
    """Run ``command``; wall time from spawn to exit, the child's peak RSS from wait4 and
    /proc samples. Killed after ``timeout_s``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started_at = time.time()
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=str(ROOT))
        result: dict[str, Any] = {}

        def reap() -> None:
            _pid, status, usage = os.wait4(child.pid, 0)
            result.update(ended=time.perf_counter(), status=status, usage=usage)
        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        samples: list[tuple[float, int]] = []
        hwm = 0
        while reaper.is_alive():
            rss, peak = _proc_memory(child.pid)
            if rss:
                samples.append((time.perf_counter() - started, rss))
                hwm = max(hwm, peak)
            if time.perf_counter() - started > timeout_s:
                child.kill()
                reaper.join(10)
                raise SystemExit(f"{' '.join(command)} still running after {timeout_s:g} s: killed")
            reaper.join(sample_every)
        child.returncode = os.waitstatus_to_exitcode(result["status"])
        out.seek(0)
        err.seek(0)
        return Run(result["ended"] - started, child.returncode, out.read(), err.read(),
                   result["usage"].ru_maxrss, hwm, samples, started_at)


def _proc_memory(pid: int) -> tuple[int, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            values[line.split(":")[0]] = int(line.split()[1])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def run_hexaflow(world: World, state: Path, timeout_s: float, **env: str) -> Run:
    return run_measured([*hexaflow_command(), "run", str(FLOW)], world.env(state, **env),
                        timeout_s)


# --------------------------------------------------------------------------- what MISA holds
def expected_documents(world: World) -> tuple[dict[str, str], set[str]] | None:
    """(voucher key -> order id, customer codes) the orders call for, mapped by hand from the
    shop's orders in the shape the connector hands to flows; None without orders_by_hand."""
    try:
        sys.path.insert(0, str(BENCH))
        import orders_by_hand
    except ImportError:
        return None
    from hexaflow.connectors.haravan.normalise import loads, normalise
    from hexaflow.connectors.sandbox_server import dumps
    tables = orders_by_hand.load_tables(ROOT / "mappings")
    shop = world.haravan.app.shop
    vouchers: dict[str, str] = {}
    customers: set[str] = set()
    for oid in list(shop.orders.ids):
        order = normalise(loads(dumps(shop.orders.get(oid))))
        for doc in orders_by_hand.map_order(order, tables):
            if doc["target"] == "misa/voucher":
                if doc["key"] in vouchers:
                    raise SystemExit(f"two orders call for {doc['key']}")
                vouchers[doc["key"]] = str(oid)
            else:
                customers.add(doc["key"])
    return vouchers, customers


@dataclass
class Snapshot:
    """What MISA received, by key: vouchers (refno_finance) and customers (code)."""
    vouchers: dict[str, str]             # refno_finance -> org_refid
    payloads: dict[str, Any]             # refno_finance -> payload
    statuses: collections.Counter
    customers: set[str]
    received: int                        # vouchers received in save calls, duplicates counted
    received_twice: int
    dictionary_received: int
    dictionary_received_twice: int

    @property
    def documents(self) -> int:
        return self.received + self.dictionary_received


def snapshot(world: World, with_payloads: bool = True) -> Snapshot:
    world.misa_drain()
    stats = world.misa_stats()
    vouchers: dict[str, str] = {}
    payloads: dict[str, Any] = {}
    duplicates = []
    statuses: collections.Counter = collections.Counter()
    if with_payloads:
        for request in world.misa_requests():
            key = str(request["refno_finance"])
            if key in vouchers:
                duplicates.append(key)
            vouchers[key] = request["org_refid"]
            payloads[key] = request["payload"]
            statuses[request["status"]] += 1
        if duplicates:
            raise SystemExit(f"MISA holds several requests for {duplicates[:5]}")
    customers = {code.split(":", 1)[1] for code in world.misa.app.dictionary_received
                 if code.startswith("1:")}
    return Snapshot(vouchers, payloads, statuses, customers, stats["vouchers_received"],
                    stats["vouchers_received_twice"], stats["dictionary_received"],
                    stats["dictionary_received_twice"])


def check_exactly_once(snap: Snapshot, expected: tuple[dict[str, str], set[str]] | None,
                       what: str) -> str:
    """Every expected document arrived once, nothing else; a line saying so, or exit."""
    problems = []
    if snap.received_twice or snap.dictionary_received_twice:
        problems.append(f"{snap.received_twice} vouchers and {snap.dictionary_received_twice} "
                        "customers were sent more than once")
    if snap.received != len(snap.vouchers):
        problems.append(f"{snap.received} vouchers received for {len(snap.vouchers)} keys")
    not_accepted = {s: n for s, n in snap.statuses.items() if s != "accepted"}
    if not_accepted:
        problems.append(f"not accepted by MISA: {not_accepted}")
    if expected is not None:
        vouchers, customers = expected
        missing = sorted(set(vouchers) - set(snap.vouchers))
        extra = sorted(set(snap.vouchers) - set(vouchers))
        if missing:
            orders = sorted({vouchers[k] for k in missing})
            problems.append(f"{len(missing)} documents of {len(orders)} orders missing "
                            f"(e.g. {missing[:3]})")
        if extra:
            problems.append(f"{len(extra)} documents no order calls for (e.g. {extra[:3]})")
        if customers != snap.customers:
            problems.append(f"customers: {len(customers - snap.customers)} missing, "
                            f"{len(snap.customers - customers)} extra")
    if problems:
        raise SystemExit(f"{what}: " + "; ".join(problems))
    scope = ("every order's documents (mapped by hand) are in MISA exactly once, nothing else"
             if expected is not None else
             "each document in MISA arrived once (bench/orders_by_hand.py missing: not checked "
             "against the orders)")
    orders = len(set(expected[0].values())) if expected is not None else None
    counts = f"{len(snap.vouchers):,} vouchers" + (f" of {orders:,} orders" if orders else "") \
        + f", {len(snap.customers)} customers"
    return f"{counts}: {scope}"


def second_run(world: World, state: Path, timeout_s: float, **env: str) -> str:
    before = world.misa_stats()
    reads_before = world.haravan_stats()["requests"].get(ORDERS_PATH, 0)
    run = run_hexaflow(world, state, timeout_s, **env).check("second hexaflow run")
    world.misa_drain()
    after = world.misa_stats()
    reads = world.haravan_stats()["requests"].get(ORDERS_PATH, 0) - reads_before
    sent = {k: after[k] - before[k] for k in ("vouchers_received", "dictionary_received")}
    calls = {f: after["calls"].get(f, 0) - before["calls"].get(f, 0)
             for f in ("save", "delete", "save_dictionary")}
    if any(sent.values()) or any(calls.values()):
        raise SystemExit(f"the second run wrote to MISA: {sent}, calls {calls}")
    return (f"second run: {run.seconds:.2f} s, {reads} page read(s), wrote nothing "
            f"(no save / delete / save_dictionary call)")


# --------------------------------------------------------------------------- --limits on
def limits_on(args: argparse.Namespace) -> int:
    world = start_world(args.orders, rate_limit=True)
    try:
        expected = expected_documents(world)
        with tempfile.TemporaryDirectory(prefix="hexaflow-e2e-") as tmp:
            state = Path(tmp) / "state.db"
            # Steady state: the shop's bucket is full when the run starts.
            world.haravan_state(bucket_level=BUCKET, reset_counters=True)
            run = run_hexaflow(world, state, args.timeout,
                               HEXAFLOW_SETTLE_SECONDS=str(args.settle)).check("hexaflow run")
            stats = world.haravan_stats()
            snap = snapshot(world)
            verdict = check_exactly_once(snap, expected, "hexaflow run")
            again = second_run(world, state, args.timeout,
                               HEXAFLOW_SETTLE_SECONDS=str(args.settle))
    finally:
        world.stop()
    reads = stats["requests"].get(ORDERS_PATH, 0)
    other = {k: v for k, v in stats["requests"].items() if k != ORDERS_PATH}
    bound = reads / LEAK
    from_empty = max(0, reads - BUCKET) / LEAK
    print(f"e2e --limits on: {args.orders:,} orders, Haravan bucket {BUCKET} calls / "
          f"{LEAK:g} per s (sandbox and client), bucket full at start")
    print(f"  run wall time        {run.seconds:8.2f} s   (process start to exit, "
          f"HEXAFLOW_SETTLE_SECONDS={args.settle:g})")
    print(f"  Haravan page reads   {reads:8d}     (GET /com/orders.json"
          + (f"; other calls: {other}" if other else "") + ")")
    print(f"  bound, full bucket   {bound:8.2f} s   (reads / {LEAK:g} per s)")
    print(f"  wall / bound         {run.seconds / bound if bound else float('nan'):8.3f}      "
          f"(target <= 1.1)")
    print(f"  bound, empty bucket  {from_empty:8.2f} s   (max(0, reads - {BUCKET}) / {LEAK:g}, "
          f"for reference)")
    print(f"  429s answered        {stats['throttled']:8d}     (target 0)")
    print(f"  documents            {snap.documents:8,d}     ({verdict})")
    if stats.get("first_request_at"):
        first = stats["first_request_at"] - run.started_at
        span = stats["last_request_at"] - stats["first_request_at"]
        tail = run.started_at + run.seconds - stats["last_request_at"]
        print(f"  where the wall time went: {first:.2f} s start-up to the first Haravan call "
              f"(interpreter, imports, compiling the flow, opening the state, the client's "
              f"first wait), {span:.2f} s from the first to the last Haravan call (at least "
              f"{(reads - 1) / LEAK:.2f} s at {LEAK:g}/s), {tail:.2f} s after it (the last "
              f"page's mapping and writes, the poll of MISA's results, exit)")
    print(f"  {again}")
    return 0


# --------------------------------------------------------------------------- --limits off
def limits_off(args: argparse.Namespace) -> int:
    plain = BENCH / "plain_httpx.py"
    if not (BENCH / "orders_by_hand.py").exists():
        raise SystemExit("bench/orders_by_hand.py is missing: the plain script maps with it")
    world = start_world(args.orders, rate_limit=False)
    env_off = {"HARAVAN_RATE_LIMIT": "off", "HEXAFLOW_SETTLE_SECONDS": str(args.settle)}
    hexa_runs: list[tuple[Run, Snapshot]] = []
    plain_runs: list[tuple[Run, Snapshot, dict[str, Any]]] = []
    try:
        expected = expected_documents(world)
        with tempfile.TemporaryDirectory(prefix="hexaflow-e2e-") as tmp:
            for attempt in range(args.repeat):
                for which in ("hexaflow", "plain") if attempt % 2 == 0 else ("plain", "hexaflow"):
                    world.misa_reset()
                    world.haravan_state(reset_counters=True)
                    if which == "hexaflow":
                        state = Path(tmp) / f"state-{attempt}.db"
                        run = run_hexaflow(world, state, args.timeout, **env_off) \
                            .check("hexaflow run")
                        snap = snapshot(world)
                        check_exactly_once(snap, expected, "hexaflow run")
                        if attempt == 0:
                            again = second_run(world, state, args.timeout, **env_off)
                        hexa_runs.append((run, snap))
                    else:
                        run = run_measured([sys.executable, str(plain)],
                                           world.env(Path(tmp) / "unused.db"), args.timeout) \
                            .check("plain_httpx.py")
                        snap = snapshot(world)
                        check_exactly_once(snap, expected, "plain_httpx.py")
                        plain_runs.append((run, snap, json.loads(run.stdout.strip().splitlines()[-1])))
    finally:
        world.stop()
    h_run, h_snap = min(hexa_runs, key=lambda r: r[0].seconds)
    p_run, p_snap, p_out = min(plain_runs, key=lambda r: r[0].seconds)
    same_keys = set(h_snap.vouchers) == set(p_snap.vouchers) and h_snap.customers == p_snap.customers
    same_payloads = sum(1 for k, v in h_snap.payloads.items() if p_snap.payloads.get(k) == v)
    if not same_keys:
        raise SystemExit("hexaflow and the plain script left different documents in MISA")
    h_rate = h_snap.documents / h_run.seconds
    p_rate = p_snap.documents / p_run.seconds
    print(f"e2e --limits off: {args.orders:,} orders, no bucket (sandbox rate limit off, "
          f"HARAVAN_RATE_LIMIT=off), best of {args.repeat}, alternating")
    print(f"  hexaflow run     {h_run.seconds:7.2f} s  {h_snap.documents:7,d} documents  "
          f"{h_rate:8.1f} documents/s   (all runs: "
          + ", ".join(f"{r.seconds:.2f}" for r, _ in hexa_runs) + " s)")
    print(f"  plain httpx      {p_run.seconds:7.2f} s  {p_snap.documents:7,d} documents  "
          f"{p_rate:8.1f} documents/s   (all runs: "
          + ", ".join(f"{r.seconds:.2f}" for r, _, _ in plain_runs) + " s; "
          f"{p_out['save_calls']} save calls)")
    print(f"  hexaflow / plain {h_rate / p_rate:7.2f}x  (target > 1)")
    print(f"  same documents in MISA: {len(h_snap.vouchers):,} vouchers and "
          f"{len(h_snap.customers)} customers, same keys; identical payloads "
          f"{same_payloads:,}/{len(h_snap.payloads):,}")
    print(f"  {check_exactly_once(h_snap, expected, 'hexaflow')}")
    print(f"  {again}")
    print("  wall time: process start to exit, both (interpreter, imports; hexaflow also "
          f"compiles the flow, keeps its ledger and polls MISA once, "
          f"HEXAFLOW_SETTLE_SECONDS={args.settle:g})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--limits", choices=("on", "off"), default="on")
    parser.add_argument("--repeat", type=int, default=3,
                        help="--limits off: runs of each, alternating (best is shown)")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="HEXAFLOW_SETTLE_SECONDS for the runs (0: one poll of MISA's "
                             "results at the end)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    args = parser.parse_args()
    return limits_on(args) if args.limits == "on" else limits_off(args)


if __name__ == "__main__":
    sys.exit(main())
