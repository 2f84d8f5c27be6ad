"""Mapping cost: the real orders flow (mappings/orders.yaml) through the engine, against the same
mapping written by hand in plain Python (bench/orders_by_hand.py).

    python bench/mapping_cost.py [--orders 20000] [--seed 7]

Generates Haravan orders in memory with the Haravan sandbox's own shop (demo orders, then
payments, deliveries, refunds, returns and cancellations through the shop's operations), in the
shape the connector hands to flows (JSON parsed with Decimal money, then normalised). Compiles
the flow once, maps every order as seen for the first time through ``Plan.evaluate`` (what
``hexaflow run --dry-run`` prints for it) and through ``orders_by_hand.map_order``, checks both
give byte-identical documents, then times both, alternating, best of three, and prints
records/s and the ratio. Times are the process's CPU time: the machines these run on are shared,
and wall time would also count the other jobs.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import random
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from hexaflow.connectors.haravan.normalise import loads, normalise
from hexaflow.connectors.haravan.sandbox_store import HaravanShop
from hexaflow.plan import Plan, compile_plan
from hexaflow.spec import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orders_by_hand  # noqa: E402  (next to this script)

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = ROOT / "mappings"


# --------------------------------------------------------------------------- orders
def _later(shop: HaravanShop, rng: random.Random, oid: int) -> None:
    """Move some demo orders on through their life, the way the shop's API would: the demo
    alone has one state per scenario; these add COD collected or refused, voids, money-only
    refunds, several returns, returns after delivery and notes."""
    order = shop.get_order(oid)
    fin, ful = order["financial_status"], order["fulfillment_status"]
    cancelled = order["cancelled_status"] == "cancelled"
    roll = rng.random()
    if cancelled:
        return
    if rng.random() < 0.05:
        shop.update_order(oid, {"note": "Giao giờ hành chính"})
    if fin == "pending" and ful == "notfulfilled":
        if roll < 0.08:
            shop.add_transaction(oid, {"kind": "void", "amount": 0})
        elif roll < 0.18:
            shop.pay_order(oid, None)
    elif fin == "pending" and ful == "fulfilled":
        if roll < 0.2:                                   # COD refused: goods come back
            shop.cancel_order(oid, {"restock": True, "reason": "customer"})
        elif roll < 0.4:                                 # COD collected
            shop.pay_order(oid, None)
    elif fin == "partiallypaid" and roll < 0.3:
        shop.pay_order(oid, None)
    elif fin == "paid" and ful == "notfulfilled" and roll < 0.1:
        total = Decimal(str(order["total_price"]))
        shop.create_refund(oid, {"transactions": [{"amount": (total // 10 // 1000) * 1000 or 1000}],
                                 "note": "Giảm giá sau bán"})
    elif fin == "paid" and ful == "fulfilled":
        total = Decimal(str(order["total_price"]))
        lines = order["line_items"]
        if roll < 0.1:                                   # returned after delivery, refunded
            shop.cancel_order(oid, {"restock": True, "amount": total, "reason": "customer"})
        elif roll < 0.2 and len(lines) > 1:              # goods returned in two refunds
            for line in (lines[0], lines[-1]):
                captured, refunded = shop.paid_amount(shop.get_order(oid))
                amount = min(Decimal(str(line["price"])) * line["quantity"], captured - refunded)
                shop.create_refund(oid, {
                    "restock": True, "note": "Khách trả hàng",
                    "refund_line_items": [{"line_item_id": line["id"], "quantity": line["quantity"]}],
                    "transactions": [{"amount": amount}]})
        elif roll < 0.25:                                # money only, goods kept
            shop.create_refund(oid, {"transactions": [{"amount": 10_000}]})
    elif fin == "partially_refunded" and roll < 0.15:
        shop.cancel_order(oid, {"reason": "other"})


def generate(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` orders as the Haravan connector reads them."""
    shop = HaravanShop(seed=seed)
    shop.reset("demo", orders=count)
    rng = random.Random(seed)
    for oid in list(shop.orders.ids):
        _later(shop, rng, oid)
    return [normalise(loads(json.dumps(shop.orders.get(oid)))) for oid in shop.orders.ids]


# --------------------------------------------------------------------------- both mappings
def engine_documents(plan: Plan, order: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``hexaflow run --dry-run`` prints for an order seen for the first time: the routes'
    documents in order, each prerequisite once, ahead of the first document that needs it."""
    outcome = plan.evaluate(order, {}, "default")
    out: list[dict[str, Any]] = []
    ensured: set[tuple[str, str, str]] = set()
    for doc in outcome.documents:
        for ens in doc.ensure:
            ident = (ens.connector, ens.document, ens.key)
            if ident not in ensured:
                ensured.add(ident)
                out.append({"route": ens.route, "target": f"{ens.connector}/{ens.document}",
                            "action": ens.action, "key": ens.key, "payload": ens.payload})
        out.append({"route": doc.route, "target": f"{doc.connector}/{doc.document}",
                    "action": doc.action, "key": doc.key, "payload": doc.payload})
    return out


def _dump(documents: list[dict[str, Any]]) -> str:
    return json.dumps(documents, sort_keys=True, ensure_ascii=False,
                      default=lambda v: str(v) if isinstance(v, Decimal) else repr(v))


def statuses(order: dict[str, Any]) -> tuple[str, str, str, int]:
    return (order["financial_status"], str(order["fulfillment_status"]),
            order["cancelled_status"], len(order.get("refunds") or []))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (best is kept)")
    args = parser.parse_args()

    started = time.perf_counter()
    orders = generate(args.orders, args.seed)
    print(f"generated {len(orders):,} orders in {time.perf_counter() - started:.1f} s")
    plan, problems = compile_plan(load_spec(MAPPINGS / "orders.yaml"))
    if plan is None:
        print("\n".join(p.text() for p in problems))
        return 1
    tables = orders_by_hand.load_tables(MAPPINGS)
    map_order = orders_by_hand.map_order
    # The orders stay in memory for the whole bench (a run holds one page at a time): keep the
    # garbage collector from walking them again and again, which would time the bench's own
    # heap instead of the mapping.
    gc.collect()
    gc.freeze()

    documents = 0
    for order in orders:
        try:
            engine_out, hand_out = engine_documents(plan, order), map_order(order, tables)
        except Exception:
            print(f"order {order['id']} {statuses(order)}: mapping failed")
            raise
        engine_text, hand_text = _dump(engine_out), _dump(hand_out)
        if engine_text != hand_text:
            print(f"order {order['id']} {statuses(order)}: the two mappings differ")
            print(" engine:      ", engine_text[:3000])
            print(" hand-written:", hand_text[:3000])
            return 1
        documents += len(engine_out)
    combos = collections.Counter(statuses(o)[:3] for o in orders)
    print(f"documents: {documents:,}, payloads identical: yes; status combinations "
          f"(financial, fulfillment, cancelled): {len(combos)}")
    for combo, n in sorted(combos.items()):
        print(f"  {n:>6,}  {' / '.join(combo)}")

    def engine() -> None:
        for order in orders:
            engine_documents(plan, order)

    def by_hand() -> None:
        for order in orders:
            map_order(order, tables)

    best = {"engine": float("inf"), "hand-written": float("inf")}
    for _ in range(args.runs):
        for name, fn in (("engine", engine), ("hand-written", by_hand)):
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    rate = {name: len(orders) / seconds for name, seconds in best.items()}
    print(f"engine:       {rate['engine']:>10,.0f} records/s")
    print(f"hand-written: {rate['hand-written']:>10,.0f} records/s")
    print(f"ratio (engine time / hand-written time): {best['engine'] / best['hand-written']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
