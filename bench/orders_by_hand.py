"""mappings/orders.yaml written by hand in plain Python: what a developer would write instead of
the flow, for an order seen for the first time (MISA holds nothing for it yet).

    tables = load_tables(Path("mappings"))
    documents = map_order(order, tables)

``order`` is a Haravan order as the connector hands it to flows (connectors/haravan/normalise.py:
money as Decimal, enums canonical, timestamps ISO UTC). ``map_order`` returns the documents the
engine's dry run prints for it, in the same order: ``{"route", "target", "action", "key",
"payload"}``, each route's prerequisite customer ahead of it (once per order). Payload amounts
are JSON numbers (an int when whole, else a float), as the engine sends them.

Only the standard library and PyYAML: no hexaflow import, so a plain script can use it too.
bench/mapping_cost.py checks it against the engine byte for byte on generated orders.

First sight means: a cancelled order writes nothing; an open one gets a sales order (plus a
receipt when paid, plus a payment per refund that returned money); a delivered one gets a sales
voucher (paid: with receipt, plus a payment per refund; unpaid: on account) and a sales return
per refund that restocked goods.
"""
from __future__ import annotations

import csv
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

# The engine's namespace for document ids (hexaflow.functions.ID_NAMESPACE): the same input must
# give the same refid.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://hexaflow.dev/ids")
# The tenant the ids are made for: the engine's default (HEXAFLOW_TENANT unset).
TENANT = "default"
SHOP_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
WHOLE = Decimal(1)
CENT = Decimal("0.01")
UNIT_PRICE_STEP = Decimal("0.0001")
PAID_STATUSES = ("paid", "partially_refunded", "refunded")
CUSTOMER_TARGET = "misa/dictionary"
VOUCHER_TARGET = "misa/voucher"


@dataclass(frozen=True)
class Tables:
    settings: dict[str, Any]
    gateways: dict[str, dict[str, Any]]      # gateway name -> row
    warehouses: dict[str, dict[str, Any]]    # Haravan location id (text) -> row
    staff: dict[str, dict[str, str]]         # Haravan user id (text) -> row


def load_tables(mappings_dir: Path) -> Tables:
    """The integrator's tables, read the way the flow names them in `lookups:`."""
    def read_yaml(name: str) -> Any:
        return yaml.safe_load((mappings_dir / name).read_text(encoding="utf-8"))

    with (mappings_dir / "staff.csv").open(newline="", encoding="utf-8-sig") as handle:
        staff = {row["haravan_user_id"]: row for row in csv.DictReader(handle)}
    return Tables(settings=read_yaml("settings.yaml"),
                  gateways={str(r["gateway"]): r for r in read_yaml("gateways.yaml")},
                  warehouses={str(r["location_id"]): r for r in read_yaml("warehouses.yaml")},
                  staff=staff)


# --------------------------------------------------------------------------- small helpers
def _money(value: Decimal, step: Decimal = WHOLE) -> Decimal:
    """Whole đồng (or ``step``), half up: the flow's money()."""
    return value.quantize(step, rounding=ROUND_HALF_UP)


def _num(value: Any) -> Any:
    """An amount as JSON sends it: an int when whole, else a float."""
    if type(value) is Decimal:
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _net_of_vat(gross: Decimal, rate: Decimal) -> Decimal:
    """The pre-tax part of a VAT-inclusive amount; rates of 0 or below leave it as it is."""
    if rate <= 0:
        return _money(gross)
    return _money(gross * 100 / (100 + rate))


def _allocate(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """``total`` in whole đồng split pro rata, each share rounded down, the remainder on the
    largest weight (the first of equals) so the shares add up exactly."""
    total = _money(total)
    if not weights:
        if total:
            raise ValueError(f"cannot allocate {total} over no lines")
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        shares = [Decimal(0)] * len(weights)
    else:
        shares = [(total * w / weight_sum).to_integral_value(rounding=ROUND_FLOOR) for w in weights]
    largest = max(range(len(weights)), key=lambda i: (weights[i], -i))
    shares[largest] += total - sum(shares)
    return shares


def _local(timestamp: str) -> str:
    """An ISO UTC timestamp as the shop's local time, to the second, with its offset."""
    moment = datetime.fromisoformat(timestamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(SHOP_ZONE).isoformat(timespec="seconds")


def _uuid(*parts: Any) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(str(p) for p in parts)))


def _document(route: str, target: str, key: str, payload: dict[str, Any],
              action: str = "upsert") -> dict[str, Any]:
    return {"route": route, "target": target, "action": action, "key": key, "payload": payload}


# --------------------------------------------------------------------------- the order's lines
def _lines(order: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Goods lines then shipping lines, with Decimal amounts: order discounts and Haravan's tax
    spread pro rata over the goods, prices split into pre-tax amount and VAT."""
    orders = settings["orders"]
    accounts = settings["accounts"]
    vat = orders["vat"]
    rate = Decimal(vat["rate"]) if vat["prices_include_vat"] else Decimal(0)
    items = order["line_items"]
    weights = [item["price"] * item["quantity"] for item in items]
    discounts = _allocate(order["total_discounts"], weights)
    tax = Decimal(0) if order.get("taxes_included") else order.get("total_tax") or Decimal(0)
    taxes = _allocate(tax, weights)
    lines = []
    for item, order_discount, order_tax in zip(items, discounts, taxes):
        price, quantity = item["price"], item["quantity"]
        original = item.get("price_original")
        unit_gross = original if original is not None and original > price else price
        gross = _money(unit_gross * quantity)
        net = _money(price * quantity)
        discount_gross = gross - net + order_discount
        amount = _net_of_vat(gross, rate)
        discount = _net_of_vat(discount_gross, rate)
        lines.append({
            "id": item["id"], "code": item["sku"], "name": item.get("name") or item.get("title"),
            "quantity": quantity, "unit_price": _money(amount / quantity, UNIT_PRICE_STEP),
            "amount": amount, "discount": discount,
            "vat": gross - discount_gross - (amount - discount) + order_tax,
            "revenue_account": accounts["revenue"], "goods": True})
    shipping_item = orders["shipping_item"]
    for ship in order.get("shipping_lines") or []:
        if not ship["price"] > 0:
            continue
        gross = _money(ship["price"])
        amount = _net_of_vat(gross, rate)
        lines.append({
            "id": f"ship-{len(lines) - len(items) + 1}", "code": shipping_item["code"],
            "name": ship.get("title") or shipping_item["name"], "quantity": 1,
            "unit_price": amount, "amount": amount, "discount": 0, "vat": gross - amount,
            "revenue_account": accounts["service_revenue"], "goods": False})
    return lines


# --------------------------------------------------------------------------- mapping
def map_order(order: dict[str, Any], tables: Tables) -> list[dict[str, Any]]:
    settings = tables.settings
    accounts = settings["accounts"]
    orders = settings["orders"]
    codes = orders["codes"]
    oid = order["id"]
    name = order["name"]
    cancelled = order["cancelled_status"] == "cancelled"
    fulfillments = order.get("fulfillments") or []
    fulfilled = order["fulfillment_status"] == "fulfilled" or (
        order["fulfillment_status"] == "restocked" and len(fulfillments) > 0)
    paid = order["financial_status"] in PAID_STATUSES
    if cancelled:
        return []        # nothing was written for it: nothing to write or to reverse

    gateway = tables.gateways.get(str(order.get("gateway")))
    bank = (gateway["kind"] if gateway else orders["default_payment_kind"]) == "bank"
    money_account = accounts["bank"] if bank else accounts["cash"]
    customer = order.get("customer")
    walk_in = not customer or (customer.get("email") or "") in settings["walk_in"]["guest_emails"]
    if walk_in:
        customer_code, customer_name = settings["walk_in"]["code"], settings["walk_in"]["name"]
    else:
        customer_code = f"{settings['customer_code_prefix']}{customer['id']}"
        customer_name = (" ".join(p for p in (customer.get("last_name"), customer.get("first_name")) if p)
                         or customer.get("email") or customer_code)
    shipping_address = order.get("shipping_address") or {}
    address = ", ".join(p for p in (shipping_address.get("address1"), shipping_address.get("ward"),
                                    shipping_address.get("district"), shipping_address.get("province")) if p)
    staff = tables.staff.get(str(order.get("user_id")))
    employee_code = staff["misa_employee_code"] if staff else None
    first_fulfillment = fulfillments[0] if fulfillments else {}
    location = first_fulfillment.get("location_id") or order["location_id"]
    stock_code = tables.warehouses[str(location)]["stock_code"]
    branch_id = settings["branch_id"]
    vat_rate = orders["vat"]["rate"]
    lines = _lines(order, settings)
    sale_total = sum(line["amount"] for line in lines)
    discount_total = sum(line["discount"] for line in lines)
    vat_total = sum(line["vat"] for line in lines)
    total = sale_total + vat_total - discount_total

    out: list[dict[str, Any]] = []

    def with_customer(document: dict[str, Any]) -> None:
        """The route's document, after the customer it needs (once per order)."""
        if not out:      # the first document of an order always needs the customer
            out.append(_document(f"{document['route']}.customer", CUSTOMER_TARGET, customer_code, {
                "dictionary_type": 1, "account_object_code": customer_code,
                "account_object_name": customer_name, "account_object_type": 1,
                "is_customer": True, "is_vendor": False, "is_employee": False,
                "address": address, "tel": None if walk_in else customer.get("phone"),
                "email_address": None if walk_in else customer.get("email"),
                "receive_account": accounts["receivable"], "branch_id": branch_id,
                "inactive": False}, action="create"))
        out.append(document)

    totals = {
        "total_sale_amount": _num(sale_total), "total_sale_amount_oc": _num(sale_total),
        "total_discount_amount": _num(discount_total),
        "total_discount_amount_oc": _num(discount_total),
        "total_vat_amount": _num(vat_total), "total_vat_amount_oc": _num(vat_total),
        "total_amount": _num(total), "total_amount_oc": _num(total)}

    def discount_rate(line: dict[str, Any]) -> Any:
        if line["amount"] > 0:
            return _num(_money(line["discount"] / line["amount"] * 100, CENT))
        return 0

    if not fulfilled:
        # An order not yet delivered is a sales order; money received for it is a receipt.
        detail = [{
            "sort_order": n, "inventory_item_code": line["code"], "inventory_item_name": line["name"],
            "description": line["name"], "stock_code": stock_code if line["goods"] else None,
            "quantity": line["quantity"], "unit_price": _num(line["unit_price"]),
            "amount": _num(line["amount"]), "amount_oc": _num(line["amount"]),
            "discount_rate": discount_rate(line), "discount_amount": _num(line["discount"]),
            "discount_amount_oc": _num(line["discount"]), "vat_rate": vat_rate,
            "vat_amount": _num(line["vat"]), "vat_amount_oc": _num(line["vat"]),
            "is_promotion": False, "exchange_rate_operator": "*"} for n, line in enumerate(lines, 1)]
        order_date = _local(order["created_at"])
        refid = _uuid(TENANT, "sales_order", oid)
        with_customer(_document("sales_order", VOUCHER_TARGET, f"{codes['sales_order']}{oid}", {
            "voucher_type": 20, "reftype": 3520, "org_reftype": 3520,
            "org_reftype_name": "Đơn hàng Haravan", "org_refid": refid, "refid": refid,
            "org_refno": str(oid), "refno_finance": f"{codes['sales_order']}{oid}",
            "auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
            "branch_id": branch_id, "refdate": order_date, "delivery_date": order_date,
            "account_object_code": customer_code, "account_object_name": customer_name,
            "account_object_address": address, "shipping_address": address,
            "employee_code": employee_code,
            "journal_memo": f"Đơn hàng Haravan {name}" + (f" - {order['note']}" if order.get("note") else ""),
            "currency_id": "VND", "exchange_rate": 1, **totals, "detail": detail}))
        if paid:
            captures = [t for t in order.get("transactions") or [] if t.get("kind") in ("capture", "sale")]
            paid_date = _local((captures[0].get("created_at") if captures else None) or order["created_at"])
            refid = _uuid(TENANT, "receipt", oid)
            amount = _num(_money(order["total_price"]))
            with_customer(_document("receipt", VOUCHER_TARGET, f"{codes['receipt']}{oid}", {
                "voucher_type": 1 if bank else 5, "reftype": 1500 if bank else 1010,
                "org_reftype_name": "Đơn hàng Haravan", "org_refid": refid, "refid": refid,
                "org_refno": str(oid), "refno_finance": f"{codes['receipt']}{oid}",
                "auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
                "branch_id": branch_id, "reason_type_id": orders["receipt_reason_type_id"],
                "refdate": paid_date, "posted_date": paid_date,
                "account_object_code": customer_code, "account_object_name": customer_name,
                "account_object_address": address, "employee_code": employee_code,
                "journal_memo": f"Thu tiền đơn hàng Haravan {name} ({order['gateway']})",
                "currency_id": "VND", "exchange_rate": 1,
                "total_amount": amount, "total_amount_oc": amount,
                "detail": [{"sort_order": 1, "description": f"Thu tiền đơn hàng {name}",
                            "debit_account": money_account, "credit_account": accounts["receivable"],
                            "amount": amount, "amount_oc": amount,
                            "account_object_code": customer_code}]}))
    else:
        # Delivered: a sales voucher with stock issue, with the receipt when paid, else on the
        # customer's account.
        fulfilled_date = _local(first_fulfillment.get("created_at") or order["created_at"])
        route = "sales_voucher_paid" if paid else "sales_voucher_unpaid"
        debit_account = money_account if paid else accounts["receivable"]
        detail = [{
            "sort_order": n, "inventory_item_code": line["code"], "inventory_item_name": line["name"],
            "description": line["name"], "stock_code": stock_code if line["goods"] else None,
            "quantity": line["quantity"], "unit_price": _num(line["unit_price"]),
            "amount": _num(line["amount"]), "amount_oc": _num(line["amount"]),
            "discount_rate": discount_rate(line), "discount_amount": _num(line["discount"]),
            "discount_amount_oc": _num(line["discount"]), "vat_rate": vat_rate,
            "vat_amount": _num(line["vat"]), "vat_amount_oc": _num(line["vat"]),
            "debit_account": debit_account, "credit_account": line["revenue_account"],
            "vat_account": accounts["vat_output"], "discount_account": accounts["sales_discount"],
            "cost_account": accounts["cost_of_goods"] if line["goods"] else None,
            "stock_account": accounts["inventory"] if line["goods"] else None,
            "account_object_code": customer_code, "is_promotion": False, "is_description": False,
            "exchange_rate_operator": "*"} for n, line in enumerate(lines, 1)]
        refid = _uuid(TENANT, "sales_voucher", oid)
        with_customer(_document(route, VOUCHER_TARGET, f"{codes['sales_voucher']}{oid}", {
            "voucher_type": 13, "reftype": (3537 if bank else 3531) if paid else 3530,
            "org_reftype_name": "Đơn hàng Haravan", "org_refid": refid, "refid": refid,
            "org_refno": str(oid), "refno_finance": f"{codes['sales_voucher']}{oid}",
            "auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
            "branch_id": branch_id, "refdate": fulfilled_date, "posted_date": fulfilled_date,
            "account_object_code": customer_code, "account_object_name": customer_name,
            "account_object_address": address, "payer": customer_name,
            "employee_code": employee_code, "journal_memo": f"Bán hàng đơn Haravan {name}",
            "currency_id": "VND", "exchange_rate": 1, "is_paid": paid, "paid_type": 1 if paid else 0,
            "is_sale_with_outward": True,
            "in_outward": {
                "reftype": 2020, "branch_id": branch_id, "refdate": fulfilled_date,
                "posted_date": fulfilled_date, "in_reforder": fulfilled_date,
                "account_object_code": customer_code, "account_object_name": customer_name,
                "employee_code": employee_code,
                "journal_memo": f"Xuất kho bán hàng đơn Haravan {name}"},
            **totals, "detail": detail}))

    refunds = order.get("refunds") or []
    if paid:
        # Money returned: one payment per refund, once MISA holds the money (receipt or sales
        # voucher with receipt, both written just above).
        for position, refund in enumerate(refunds, 1):
            returned = abs(sum(t["amount"] for t in refund["transactions"] if t.get("amount") is not None))
            if not returned > 0:
                continue
            amount = _num(_money(returned))
            refund_date = _local(refund.get("created_at") or order.get("cancelled_at") or order["created_at"])
            code = f"{codes['payment']}{oid}" + (f"_{position}" if position > 1 else "")
            refid = _uuid(TENANT, "payment", oid, position)
            with_customer(_document("refund_payment", VOUCHER_TARGET, code, {
                "voucher_type": 4, "reftype": 1020, "org_reftype": 1020,
                "org_reftype_name": "Hoàn tiền đơn hàng Haravan", "org_refid": refid,
                "refid": refid, "org_refno": str(oid), "refno_finance": code,
                "auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
                "branch_id": branch_id, "reason_type_id": orders["payment_reason_type_id"],
                "refdate": refund_date, "posted_date": refund_date,
                "account_object_code": customer_code, "account_object_name": customer_name,
                "account_object_contact_name": customer_name, "employee_code": employee_code,
                "journal_memo": f"Hoàn tiền đơn hàng Haravan {name}"
                                + (f" - {refund['note']}" if refund.get("note") else ""),
                "currency_id": "VND", "exchange_rate": 1,
                "total_amount": amount, "total_amount_oc": amount,
                "detail": [{"sort_order": 1, "description": f"Hoàn tiền đơn hàng {name}",
                            "debit_account": accounts["receivable"], "credit_account": money_account,
                            "amount": amount, "amount_oc": amount,
                            "account_object_code": customer_code}]}))
    if fulfilled:
        # Goods taken back by a refund of a delivered order: a sales return of those lines at
        # their share of the sale (BTL_<id>, then BTL_<id>_2... by the refund's position).
        goods_by_id = {str(line["id"]): line for line in lines if line["goods"] and line["id"] is not None}
        return_settings = orders["sales_return"]
        for position, refund in enumerate(refunds, 1):
            refund_lines = refund.get("refund_line_items") or []
            if not refund.get("restock") or not refund_lines:
                continue
            returned = []
            for refund_line in refund_lines:
                sold = goods_by_id.get(str(refund_line["line_item_id"]))
                if sold is None:
                    raise ValueError("a refunded line is not a line of the order")
                share = Decimal(refund_line["quantity"]) / Decimal(sold["quantity"])
                amount = _money(sold["amount"] * share)
                discount = _money(sold["discount"] * share)
                returned_total = _money((sold["amount"] + sold["vat"] - sold["discount"]) * share)
                returned.append({"code": sold["code"], "name": sold["name"],
                                 "quantity": refund_line["quantity"], "unit_price": sold["unit_price"],
                                 "amount": amount, "discount": discount,
                                 "vat": returned_total + discount - amount})
            amount = sum(line["amount"] for line in returned)
            discount = sum(line["discount"] for line in returned)
            vat = sum(line["vat"] for line in returned)
            code = f"{codes['sales_return']}{oid}" + (f"_{position}" if position > 1 else "")
            refid = _uuid(TENANT, "sales_return", oid, position)
            return_date = _local(refund.get("created_at") or order["updated_at"])
            out.append(_document("partial_return", VOUCHER_TARGET, code, {
                "voucher_type": return_settings["voucher_type"], "reftype": return_settings["reftype"],
                "org_reftype_name": "Trả hàng đơn Haravan", "org_refid": refid, "refid": refid,
                "org_refno": str(oid), "refno_finance": code, "auto_refno": False,
                "is_get_new_id": False, "act_voucher_type": 0, "branch_id": branch_id,
                "refdate": return_date, "posted_date": return_date,
                "account_object_code": customer_code, "account_object_name": customer_name,
                "employee_code": employee_code, "journal_memo": f"Hàng bán trả lại đơn Haravan {name}",
                "is_return_with_inward": True, "currency_id": "VND", "exchange_rate": 1,
                "total_sale_amount": _num(amount), "total_sale_amount_oc": _num(amount),
                "total_discount_amount": _num(discount), "total_discount_amount_oc": _num(discount),
                "total_vat_amount": _num(vat), "total_vat_amount_oc": _num(vat),
                "total_amount": _num(amount + vat - discount),
                "total_amount_oc": _num(amount + vat - discount),
                "detail": [{
                    "sort_order": n, "inventory_item_code": line["code"],
                    "inventory_item_name": line["name"], "description": line["name"],
                    "stock_code": stock_code, "quantity": line["quantity"],
                    "unit_price": _num(line["unit_price"]), "amount": _num(line["amount"]),
                    "amount_oc": _num(line["amount"]), "discount_amount": _num(line["discount"]),
                    "discount_amount_oc": _num(line["discount"]), "vat_rate": vat_rate,
                    "vat_amount": _num(line["vat"]), "vat_amount_oc": _num(line["vat"]),
                    "debit_account": accounts["sales_return"],
                    "credit_account": accounts["receivable"], "vat_account": accounts["vat_output"],
                    "stock_account": accounts["inventory"], "cost_account": accounts["cost_of_goods"],
                    "account_object_code": customer_code} for n, line in enumerate(returned, 1)]}))
    return out
