"""Webhook throughput and answer time of ``hexaflow serve`` (Starlette on uvicorn).

    python bench/serve.py [--deliveries 2000] [--concurrency 50]

Starts both sandboxes (empty) in this process and ``hexaflow serve`` with the packaged orders
flow as its own process (so the load generator does not share its interpreter), scheduler off.
Then ``--concurrency`` client threads, each on one kept-alive connection, send ``--deliveries``
signed Haravan ``orders/updated`` webhooks in all, each a new version of an order (so every one
takes the whole receive path: verify, store in the inbox, ask the dispatcher, answer; the runs
they ask for coalesce). Prints deliveries per second and the answer time's p50 / p95 / max;
every answer must be 200 and no connection refused or reset (else exit 1).

Two serve processes sharing one store need the PostgreSQL state store: that line is printed
as not measured until it is merged.
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
from pathlib import Path

import httpx

from hexaflow.connectors.commands import start_sandboxes
from hexaflow.connectors.haravan.webhooks import sign

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {"HARAVAN_TOKEN": "bench-token", "HARAVAN_WEBHOOK_SECRET": "bench-webhook-secret",
               "MISA_APP_ID": "bench-app", "MISA_ACCESS_CODE": "bench-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
START_S = 30.0
STOP_S = 30.0


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
            return proc, line.split("listening on ", 1)[1].split()[0]
    proc.kill()
    raise SystemExit("hexaflow serve did not start")


def deliver(url: str, bodies: list[bytes], answers: list[tuple[int | str, float]]) -> None:
    with httpx.Client(timeout=30) as http:
        for raw in bodies:
            headers = {"Content-Type": "application/json", "X-Haravan-Topic": "orders/updated",
                       "X-Haravan-Hmacsha256": sign(raw, CREDENTIALS["HARAVAN_WEBHOOK_SECRET"])}
            began = time.perf_counter()
            try:
                status: int | str = http.post(url, content=raw, headers=headers).status_code
            except httpx.TransportError as exc:
                status = type(exc).__name__
            answers.append((status, time.perf_counter() - began))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url,
               "HEXAFLOW_STATE": str(Path(tmp) / "state.db")}
        proc, url = start_serve(env)
        try:
            bodies = [json.dumps({"id": 5_000_000 + i % 500, "updated_at":
                                  f"2026-11-27T10:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}0Z"}
                                 ).encode() for i in range(args.deliveries)]
            answers: list[tuple[int | str, float]] = []
            threads = [threading.Thread(target=deliver, args=(f"{url}/hooks/haravan",
                                                               bodies[n::args.concurrency], answers))
                       for n in range(args.concurrency)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            wall = time.perf_counter() - began
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
            haravan.stop()
            misa.stop()
    statuses = [s for s, _ in answers]
    seconds = [t for _, t in answers]
    print(f"1 serve process: {len(answers)} deliveries, {args.concurrency} concurrent connections: "
          f"{len(answers) / wall:.0f} deliveries/s; answer p50 {percentile(seconds, 50) * 1000:.1f} ms, "
          f"p95 {percentile(seconds, 95) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms")
    print("2 serve processes: not measured (they need the PostgreSQL state store, not merged yet)")
    bad = {s: statuses.count(s) for s in set(statuses) if s != 200}
    if bad or len(answers) != args.deliveries:
        print(f"FAILED: answers other than 200: {bad}; {args.deliveries - len(answers)} unanswered")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
