"""Webhook latency: from a Haravan webhook POST to the order's voucher request queued in MISA.

    python bench/webhook_latency.py [--orders 50] [--gap 0.5] [--overlap 300] [--mode self|sandbox]

Starts both sandboxes (empty company setup plus two items, rate limit off) and ``hexaflow serve``
with the packaged orders flow in-process on loopback, scheduler off. For each order, one at a
time: the shop creates it through Haravan's API, then

- ``--mode self`` (default): the bench POSTs the signed ``orders/create`` webhook to serve and
  the clock starts at that POST;
- ``--mode sandbox``: the Haravan sandbox delivers its own webhooks to serve and the clock starts
  when the order is created (so it includes the sandbox's delivery);

and the clock stops when MISA's sandbox has received the save call that queues the order's
sales-order request (``GET /_sandbox/calls``); at the end every order must have exactly one
request (``GET /_sandbox/requests``). Prints median / p95 / max
and the receiver's own answer time (POST → 200). The path measured: receive + verify + inbox +
dispatcher wake-up + an incremental run (read from the cursor, minus the overlap window, map,
ledger, save to MISA).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hexaflow.connectors.commands import start_sandboxes
from hexaflow.connectors.haravan.webhooks import sign
from hexaflow.runner import load_plan
from hexaflow.serve import HookServer

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {"HARAVAN_TOKEN": "bench-token", "HARAVAN_WEBHOOK_SECRET": "bench-webhook-secret",
               "MISA_APP_ID": "bench-app", "MISA_ACCESS_CODE": "bench-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
ITEMS = {"AO-THUN-M": ("Áo thun cotton", "Cái", 250000), "QUAN-JEAN-32": ("Quần jean slim", "Cái", 450000)}
TIMEOUT_S = 30.0
SALES_ORDER = 20


def sent_vouchers(http: httpx.Client, misa_url: str) -> int:
    calls = http.get(f"{misa_url}/_sandbox/calls").json()["calls"]
    return sum(c.get("vouchers", 0) for c in calls if c["function"] == "save")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50, help="webhooks to send (one order each)")
    parser.add_argument("--overlap", type=float, default=300,
                        help="HARAVAN_OVERLAP_SECONDS: how far before its cursor each run re-reads")
    parser.add_argument("--mode", choices=("self", "sandbox"), default="self")
    parser.add_argument("--gap", type=float, default=0.5,
                        help="seconds between orders; each webhook's run reads Haravan, whose "
                             "bucket drains 4 calls/s, so back-to-back orders (0) measure "
                             "the rate limit rather than serve")
    parser.add_argument("--sandbox-nagle", action="store_true",
                        help="keep Nagle's algorithm on in the sandboxes' HTTP servers (their "
                             "default): each MISA call then waits ~40 ms for a delayed ACK, "
                             "a loopback artefact no real API shows")
    args = parser.parse_args()
    if not args.sandbox_nagle:
        # The sandboxes answer with two writes (headers, body); see --sandbox-nagle.
        import socketserver
        socketserver.StreamRequestHandler.disable_nagle_algorithm = True

    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    config = {**creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url,
              "HARAVAN_OVERLAP_SECONDS": str(args.overlap)}
    http = httpx.Client(timeout=TIMEOUT_S)
    auth = {"Authorization": f"Bearer {creds['HARAVAN_TOKEN']}"}
    with tempfile.TemporaryDirectory() as tmp:
        server = HookServer.single([load_plan(ROOT / "mappings" / "orders.yaml")], tenant="bench",
                            config=config, state=str(Path(tmp) / "state.db"), port=0,
                            interval=0).start()
        try:
            entries = [{"dictionary_type": 3, "inventory_item_code": sku, "inventory_item_name": n,
                        "inventory_item_type": 0, "unit_name": u, "unit_price": p}
                       for sku, (n, u, p) in ITEMS.items()]
            http.post(f"{misa.url}/_sandbox/dictionary", json={"dictionary": entries}).raise_for_status()
            if args.mode == "sandbox":
                http.post(f"{haravan.url}/_sandbox/webhooks",
                          json={"url": server.hook_url("haravan"),
                                "topics": ["orders/create"]}).raise_for_status()
            customer = http.post(f"{haravan.url}/com/customers.json", headers=auth, json={
                "customer": {"first_name": "Lan", "last_name": "Nguyễn", "email": "lan@example.com"}
            }).json()["customer"]
            latencies, answers, order_ids = [], [], []
            for i in range(args.orders):
                if i:
                    time.sleep(args.gap)
                body = {"gateway": "Bank transfer", "customer": {"id": customer["id"]},
                        "line_items": [{"sku": "AO-THUN-M", "title": "Áo thun cotton",
                                        "price": 250000, "quantity": 1 + i % 3}]}
                started = time.perf_counter()
                order = http.post(f"{haravan.url}/com/orders.json", headers=auth,
                                  json={"order": body}).json()["order"]
                if args.mode == "self":
                    raw = json.dumps(order, ensure_ascii=False).encode("utf-8")
                    headers = {"Content-Type": "application/json", "X-Haravan-Topic": "orders/create",
                               "X-Haravan-Hmacsha256": sign(raw, creds["HARAVAN_WEBHOOK_SECRET"])}
                    started = time.perf_counter()
                    answer = http.post(server.hook_url("haravan"), content=raw, headers=headers)
                    answers.append(time.perf_counter() - started)
                    if answer.status_code != 200:
                        print(f"webhook answered {answer.status_code}: {answer.text}", file=sys.stderr)
                        return 1
                deadline = started + TIMEOUT_S
                # Wait for MISA's next save call carrying vouchers (small answers: polling
                # the full request list would compete with serve for the CPU).
                while sent_vouchers(http, misa.url) < len(latencies) + 1:
                    if time.perf_counter() > deadline:
                        print(f"order {order['id']}: no request in MISA after {TIMEOUT_S:g} s",
                              file=sys.stderr)
                        return 1
                    time.sleep(0.003)
                latencies.append(time.perf_counter() - started)
                order_ids.append(str(order["id"]))
            rows = http.get(f"{misa.url}/_sandbox/requests").json()["requests"]
            queued = {str(r["org_refno"]) for r in rows if r["voucher_type"] == SALES_ORDER}
            if sorted(queued) != sorted(order_ids) or len(rows) != len(order_ids):
                print(f"expected one sales order per order, got {len(rows)} requests",
                      file=sys.stderr)
                return 1
        finally:
            server.stop()
            http.close()
            haravan.stop()
            misa.stop()

    ms = [v * 1000 for v in latencies]
    print(f"webhook → voucher request in MISA, {len(ms)} orders, mode {args.mode}, "
          f"gap {args.gap:g} s, overlap {args.overlap:g} s, "
          f"sandbox Nagle {'on' if args.sandbox_nagle else 'off'}")
    print(f"  median {statistics.median(ms):.1f} ms   p95 {percentile(ms, 95):.1f} ms   "
          f"max {max(ms):.1f} ms   (first {ms[0]:.1f} ms: connects to MISA)")
    if answers:
        a = [v * 1000 for v in answers]
        print(f"  receiver answer (POST → 200): median {statistics.median(a):.1f} ms   "
              f"p95 {percentile(a, 95):.1f} ms   max {max(a):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
