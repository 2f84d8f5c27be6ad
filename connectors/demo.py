"""``hexaflow demo``: both sandboxes with demo data, every packaged flow, and what it created.

Runs on a fresh machine with no credentials and no network: the sandboxes listen on loopback
with credentials made up for the occasion, and the state lives in a temporary SQLite file.
"""
from __future__ import annotations

import tempfile
import time
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx

from hexaflow.runner import Connectors, load_plan, poll_results, run_flow
from hexaflow.spec import is_flow
from hexaflow.state import open_store
from hexaflow.yamlload import read_data_file

# Flows that others depend on run first (customers before the orders that need them).
FLOW_ORDER = ["customers", "products", "inventory", "orders"]
SETTLE_SECONDS = 15.0


def packaged_flows() -> list[Path]:
    folder = Path(str(files("hexaflow.mappings")))
    flows = [p for p in sorted(folder.glob("*.yaml")) if is_flow(read_data_file(p))]
    rank = {name: i for i, name in enumerate(FLOW_ORDER)}
    return sorted(flows, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def run_demo(orders: int = 60, out=print) -> int:
    from hexaflow.connectors.commands import start_sandboxes

    haravan, misa, creds = start_sandboxes(data="demo", orders=orders, rate_limit=False,
                                           credentials=_demo_credentials())
    config = {**creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url}
    try:
        with tempfile.TemporaryDirectory(prefix="hexaflow-demo-") as tmp:
            store = open_store(str(Path(tmp) / "state.db"))
            out(f"Haravan sandbox {haravan.url} · MISA AMIS sandbox {misa.url} · state {tmp}/state.db")
            flows = packaged_flows()
            if not flows:
                out("no flows in mappings/ yet")
            failed = False
            for path in flows:
                plan = load_plan(path)
                connectors = Connectors("demo", plan.base_dir, config)
                try:
                    summary = run_flow(plan, tenant="demo", store=store, connectors=connectors,
                                       report=lambda line: out("  ! " + line))
                    deadline = time.monotonic() + SETTLE_SECONDS
                    while poll_results(plan, "demo", store, connectors) and time.monotonic() < deadline:
                        time.sleep(0.3)
                finally:
                    connectors.close()
                failed = failed or summary.failed
                out(summary.render().rstrip())
                states = Counter(e.state for e in store.entries("demo", plan.name))
                if states:
                    out("  documents now: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
            out("")
            out(_what_was_created(haravan.url, misa.url))
            store.close()
            return 1 if failed else 0
    finally:
        haravan.stop()
        misa.stop()


def _demo_credentials() -> dict[str, str]:
    # Made up for the demo: never the caller's real credentials, even if they are set.
    return {"HARAVAN_TOKEN": "demo-token", "HARAVAN_WEBHOOK_SECRET": "demo-webhook-secret",
            "MISA_APP_ID": "demo-app", "MISA_ACCESS_CODE": "demo-access-code",
            "MISA_ORG_COMPANY_CODE": "0312345678"}


def _what_was_created(haravan_url: str, misa_url: str) -> str:
    with httpx.Client(timeout=10) as client:
        misa_requests = client.get(f"{misa_url}/_sandbox/requests").json().get("requests", [])
        dictionary = client.get(f"{misa_url}/_sandbox/dictionary").json()
        shop = client.get(f"{haravan_url}/_sandbox/state").json()
    lines = ["What is where now:"]
    lines.append(f"  Haravan: {len(shop.get('customers', []))} customers, "
                 f"{len(shop.get('orders', []))} orders, {len(shop.get('products', []))} products")
    names = {loc["id"]: loc["name"] for loc in shop.get("locations", [])}
    on_hand: Counter[str] = Counter()
    for row in shop.get("inventory", []):
        on_hand[names.get(row.get("loc_id"), str(row.get("loc_id")))] += row.get("qty_onhand") or 0
    if on_hand:
        lines.append("  Haravan stock on hand: "
                     + ", ".join(f"{name} {qty}" for name, qty in sorted(on_hand.items())))
    lines.append(f"  MISA AMIS: {len(dictionary.get('account_objects', []))} account objects, "
                 f"{len(dictionary.get('inventory_items', []))} items, "
                 f"{len(dictionary.get('stocks', []))} warehouses")
    by_kind: Counter[tuple[Any, Any, Any]] = Counter()
    totals: Counter[tuple[Any, Any, Any]] = Counter()
    examples: dict[tuple[Any, Any, Any], list[str]] = {}
    for req in misa_requests:
        kind = (req.get("voucher_type"), req.get("reftype"), req.get("status"))
        by_kind[kind] += 1
        totals[kind] += (req.get("payload") or {}).get("total_amount") or 0
        examples.setdefault(kind, []).append(str(req.get("refno_finance") or req.get("org_refid")))
    if by_kind:
        lines.append("  MISA voucher requests (voucher_type / reftype / status: count, total, codes):")
        for kind, count in sorted(by_kind.items(), key=lambda kv: tuple(map(str, kv[0]))):
            codes = ", ".join(sorted(examples[kind])[:3]) + (", ..." if count > 3 else "")
            lines.append(f"    {kind[0]} / {kind[1]} / {kind[2]}: {count}, "
                         f"{totals[kind]:,.0f} đ ({codes})")
    else:
        lines.append("  MISA voucher requests: none")
    return "\n".join(lines)
