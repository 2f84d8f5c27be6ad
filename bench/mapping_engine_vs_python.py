"""Mapping cost: the engine against a hand-written Python function producing identical payloads.

    python bench/mapping_engine_vs_python.py [--orders 20000]

Generates realistic orders in memory (nested lines, order-level discounts, several statuses),
maps them through bench/orders_bench_flow.yaml with the engine and through ``hand_written``,
checks every payload is identical, and prints records/s for both and the ratio. Both sides are
timed in the same process, alternating, best of three.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from hexaflow.functions import ID_NAMESPACE
from hexaflow.money import allocate
from hexaflow.plan import compile_plan
from hexaflow.spec import load_spec
from hexaflow.timeutil import to_zone

HERE = Path(__file__).resolve().parent
SKUS = [("AO-THUN-M", "Áo thun cotton", 250000), ("QUAN-JEAN-32", "Quần jean slim", 450000),
        ("GIAY-40", "Giày thể thao", 890000), ("MU", "Mũ lưỡi trai", 150000),
        ("TUI", "Túi xách da", 1250000), ("VO", "Vớ cotton", 35000)]
WAREHOUSES = {"963414": "KHO_HCM", "963415": "KHO_HN", "963416": "KHO_DN"}


def generate(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    orders = []
    for i in range(n):
        lines = []
        for j in range(rng.randint(1, 5)):
            sku, title, price = rng.choice(SKUS)
            lines.append({"id": i * 10 + j, "sku": sku, "title": title, "quantity": rng.randint(1, 4),
                          "price": Decimal(price), "variant_id": 1000 + j})
        subtotal = sum(l["price"] * l["quantity"] for l in lines)
        discount = Decimal(rng.choice([0, 0, 10000, 50000]))
        shipping = Decimal(rng.choice([0, 30000]))
        orders.append({
            "id": 1_000_000_000 + i, "name": f"#{100000 + i}",
            "created_at": f"2024-06-{1 + i % 28:02d}T{i % 24:02d}:15:22.{i % 1000:03d}Z",
            "financial_status": rng.choice(["pending", "paid", "paid", "partially_refunded"]),
            "fulfillment_status": rng.choice([None, "fulfilled"]),
            "cancelled_status": rng.choice(["uncancelled"] * 9 + ["cancelled"]),
            "location_id": rng.choice([963414, 963415, 963416]),
            "customer": {"id": 500 + i % 300},
            "total_discounts": discount, "total_price": subtotal - discount + shipping,
            "line_items": lines,
        })
    return orders


def _json(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def _money(d: Decimal) -> Decimal:
    return d.quantize(Decimal(1), rounding=ROUND_HALF_UP)


def hand_written(order: dict, tenant: str = "default") -> list[tuple[str, str, dict]]:
    """What a developer would write by hand for the same mapping."""
    paid = order["financial_status"] in ("paid", "partially_refunded", "refunded")
    fulfilled = order["fulfillment_status"] == "fulfilled"
    cancelled = order["cancelled_status"] == "cancelled"
    items = order["line_items"]
    shares = allocate(order["total_discounts"], [l["price"] * l["quantity"] for l in items])
    refdate = to_zone(order["created_at"], "Asia/Ho_Chi_Minh").isoformat(timespec="seconds")
    oid = order["id"]
    out = []
    if not cancelled and not fulfilled:
        stock = WAREHOUSES[str(order["location_id"])]
        detail = [{"sort_order": n, "inventory_item_code": l["sku"], "description": l["title"],
                   "stock_code": stock, "quantity": l["quantity"], "unit_price": _json(l["price"]),
                   "amount": _json(_money(l["price"] * l["quantity"])), "discount_amount": _json(share)}
                  for n, (l, share) in enumerate(zip(items, shares), 1)]
        out.append(("sales_order", f"DH_{oid}", {
            "voucher_type": 20,
            "org_refid": str(uuid.uuid5(ID_NAMESPACE, f"{tenant}|sales_order|{oid}")),
            "org_refno": str(oid), "refdate": refdate,
            "account_object_code": f"KH_{order['customer']['id']}",
            "journal_memo": f"Đơn hàng Haravan {order['name']}", "currency_id": "VND",
            "total_amount": _json(_money(order["total_price"])), "detail": detail}))
    if fulfilled and not cancelled:
        detail = [{"sort_order": n, "inventory_item_code": l["sku"], "quantity": l["quantity"],
                   "unit_price": _json(l["price"]),
                   "amount": _json(_money(l["price"] * l["quantity"])), "discount_amount": _json(share)}
                  for n, (l, share) in enumerate(zip(items, shares), 1)]
        out.append(("sales_voucher", f"BH_{oid}", {
            "voucher_type": 13, "reftype": 3531 if paid else 3530,
            "org_refid": str(uuid.uuid5(ID_NAMESPACE, f"{tenant}|sales_voucher|{oid}")),
            "org_refno": str(oid), "refdate": refdate,
            "account_object_code": f"KH_{order['customer']['id']}",
            "journal_memo": f"Bán hàng đơn {order['name']}",
            "total_amount": _json(_money(order["total_price"])), "detail": detail}))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20000)
    args = parser.parse_args()
    plan, problems = compile_plan(load_spec(HERE / "orders_bench_flow.yaml"))
    if plan is None:
        print("\n".join(p.text() for p in problems))
        return 1
    orders = generate(args.orders)

    def engine() -> list:
        out = []
        for order in orders:
            outcome = plan.evaluate(order)
            out.append([(d.route, d.key, d.payload) for d in outcome.documents])
        return out

    def python() -> list:
        return [hand_written(order) for order in orders]

    engine_out, python_out = engine(), python()
    mismatches = sum(a != b for a, b in zip(engine_out, python_out))
    if mismatches:
        for a, b in zip(engine_out, python_out):
            if a != b:
                print("first mismatch:\n engine:", a, "\n python:", b)
                break
        print(f"{mismatches} of {len(orders)} orders differ: the comparison is void")
        return 1
    documents = sum(len(x) for x in engine_out)
    best = {"engine": float("inf"), "python": float("inf")}
    for _ in range(3):
        for name, fn in (("engine", engine), ("python", python)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    rate = {k: len(orders) / v for k, v in best.items()}
    print(f"orders: {len(orders)}, documents: {documents}, payloads identical: yes")
    print(f"engine:       {rate['engine']:>10,.0f} records/s")
    print(f"hand-written: {rate['python']:>10,.0f} records/s")
    print(f"ratio (hand-written / engine): {best['engine'] / best['python']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
