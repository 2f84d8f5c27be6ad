"""How fast the status page answers with many documents (docs/status-page.md).

Fills a fresh state file with N documents of one tenant (three routes per order, payloads of
~1.3 kB like a sales-order voucher, one event each, some rejected with a dead letter, some
conflicts), then renders each page in-process through ``StatusPage.handle`` and prints the
best and median of five answers. Nothing is asserted: these machines are noisy.

    python bench/status_page.py --documents 100000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from hexaflow.state import canonical_json, open_store
from hexaflow.statuspage import StatusPage

TOKEN = "bench-status-token-0123456789"
ROUTES = (("sales_order", "DH_"), ("sales_voucher", "BH_"), ("receipt", "PT_"))


def payload(order: int) -> dict:
    return {"refno_finance": f"DH_{order}", "org_refno": str(order), "currency_id": "VND",
            "journal_memo": f"Đơn hàng #{100000 + order}", "account_object_code": f"C-{order % 5000}",
            "account_object_name": "Nguyễn Văn A", "account_object_address": "12 Lê Lợi, Quận 1, TP HCM",
            "detail": [{"inventory_item_code": f"SKU-{i}", "inventory_item_name": "Áo thun cotton",
                        "quantity": 1, "unit_price": 231481, "amount": 231481, "vat_rate": 8,
                        "vat_amount": 18519, "stock_code": "KHO_HCM", "sort_order": i,
                        "description": "Áo thun cotton size M màu trắng"} for i in range(1, 4)],
            "total_amount": 694443, "total_vat_amount": 55557, "refdate": "2026-11-27T10:00:00+07:00"}


def fill(path: str, documents: int) -> None:
    store = open_store(path)
    now = time.time() - documents
    ledger, events, letters = [], [], []
    for n in range(documents):
        order, (route, prefix) = 1_000_000 + n // 3, ROUTES[n % 3]
        state = "rejected" if n % 997 == 0 else "conflict" if n % 1999 == 0 else \
            ("queued", "accepted", "generated", "posted")[n % 4]
        key = f"{prefix}{order}"
        ledger.append(("default", "orders", route, key, "target", "voucher", "upsert", str(order),
                       "v1", "h", canonical_json(payload(order)), "{}", state, f"ref-{n}",
                       None, None, 1, now + n, now + n))
        events.append(("default", "orders", route, key, now + n, state, None))
        if state == "rejected":
            letters.append(("default", "orders", str(order), route, key,
                            f"target rejected {key}: InvalidParam", None, None, now + n))
    store.db.execute("BEGIN")
    store.db.executemany(
        "INSERT INTO ledger (tenant, flow, route, key, connector, document, action, source_id, "
        "source_version, payload_hash, payload, params, state, target_ref, code, message, attempts, "
        "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", ledger)
    store.db.executemany("INSERT INTO ledger_events (tenant, flow, route, key, at, state, detail) "
                         "VALUES (?,?,?,?,?,?,?)", events)
    store.db.executemany("INSERT INTO dead_letters (tenant, flow, source_id, route, key, reason, "
                         "record, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?)", letters)
    for i in range(200):
        store.db.execute("INSERT INTO runs (tenant, flow, started_at, finished_at, status, summary) "
                         "VALUES (?,?,?,?,?,?)", ("default", "orders", now + i, now + i + 1, "ok",
                                                  json.dumps({"records": 50, "failed_records": 0,
                                                              "routes": {"sales_order": {"queued": 50}}})))
    store.db.execute("COMMIT")
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "state.db")
        started = time.perf_counter()
        fill(path, args.documents)
        size = sum(os.path.getsize(p) for p in Path(tmp).iterdir()) / 1e6
        print(f"{args.documents:,} documents in {time.perf_counter() - started:.1f} s ({size:.0f} MB)")
        page = StatusPage(config={"HEXAFLOW_ADMIN_TOKEN": TOKEN}, state=path,
                          tenants={"default": {"orders": ("shop", "orders")}})
        last = 1_000_000 + (args.documents - 1) // 3
        middle = 1_000_000 + args.documents // 6
        pages = {"overview": "/status", "overview, state filter": "/status?state=conflict",
                 "dead letters and conflicts": "/status/problems",
                 "search: record id": f"/status/search?q={middle}",
                 "search: document code": f"/status/search?q=DH_{middle}",
                 "search: order number (recent)": f"/status/search?q=%23{100000 + last}",
                 "search: order number (oldest)": "/status/search?q=%23" + str(1_100_000),
                 "search: nothing found": "/status/search?q=%23no-such-order",
                 "record page": f"/status/record/{middle}"}
        print(f"{'page':<32} {'best':>9} {'median':>9}  (ms, {args.repeat} answers each)")
        for name, target in pages.items():
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                answer = page.handle("GET", target, {"Authorization": f"Bearer {TOKEN}"})
                times.append((time.perf_counter() - t0) * 1000)
                assert answer.status == 200, (target, answer.status)
            print(f"{name:<32} {min(times):9.1f} {statistics.median(times):9.1f}")


if __name__ == "__main__":
    main()
