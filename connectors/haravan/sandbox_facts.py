"""The sandbox's rules for the facts of an order's life, kept apart from the store's plumbing.

Pure functions over an order in the API's shape: what each line has shipped, had refunded and
has left; the statuses those give; the carrier codes a fulfilment moves through; and the tax an
order computes. ``HaravanShop`` calls them and does the writing (ids, stamps, stock, webhooks).

Confidence tags as in ../shared/reference/haravan-api.md; the choices tagged [INF] or [UNK] are
listed in docs/connectors/haravan.md ("Facts the sandbox plays").
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .demo_data import money

# Carrier (shipment) status codes with the names Haravan shows, from public integrations that
# store them ([CODE]), and the fulfilment field stamped when a shipment reaches each one.
CARRIER_STATUSES: dict[str, tuple[str, str | None]] = {
    "readytopick": ("Chờ lấy hàng", "ready_to_pick_date"),
    "picking": ("Đang đi lấy", "picking_date"),
    "delivering": ("Đang giao hàng", "delivering_date"),
    "delivered": ("Đã giao hàng", "delivered_date"),
    "cancel": ("Hủy giao hàng", "cancel_date"),
    "return": ("Chuyển hoàn", "return_date"),
    "pending": ("Chờ xử lý", None),
    "notmeetcustomer": ("Không gặp khách", "not_meet_customer_date"),
    "waitingforreturn": ("Chờ chuyển hoàn", "waiting_for_return_date"),
}
# COD collection codes ([CODE]; `codnotreceipt` only from the `cod_not_receipt_date` field) and
# the field each stamps. Meanings [INF]: pending = the carrier still has to collect;
# paid = the carrier collected from the customer; receipt = the carrier remitted it to the shop.
COD_STATUSES: dict[str, str | None] = {
    "none": None, "codpending": "cod_pending_date", "codpaid": "cod_paid_date",
    "codreceipt": "cod_receipt_date", "codnotreceipt": "cod_not_receipt_date",
}
# Statuses at which the money is in the carrier's hands: Haravan then records it ([UNK] which).
COD_COLLECTED = ("codpaid", "codreceipt")
DATE_FIELDS = tuple(f for _, f in CARRIER_STATUSES.values() if f) + tuple(
    f for f in COD_STATUSES.values() if f)

COD_GATEWAY = "Thanh toán khi giao hàng (COD)"
COD_GATEWAY_NAMES = {COD_GATEWAY.lower(), "cod"}


class FactError(ValueError):
    """A refused input, with the field it is about (the store answers 422 with it)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def dec(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    return Decimal(str(value))


def whole_dong(value: Decimal) -> Decimal:
    """VND has no minor unit: tax is rounded half-up to the đồng ([INF])."""
    return value.quantize(Decimal(1), rounding=ROUND_HALF_UP)


# -- quantities per line ------------------------------------------------------------------
def shipped(order: dict[str, Any]) -> dict[int, int]:
    """Units each line has shipped, over all fulfilments."""
    out: dict[int, int] = {}
    for f in order.get("fulfillments") or []:
        for fl in f.get("line_items") or []:
            out[fl["id"]] = out.get(fl["id"], 0) + int(fl["quantity"])
    return out


def refunded(order: dict[str, Any]) -> dict[int, int]:
    """Units each line has had refunded, over all refunds."""
    out: dict[int, int] = {}
    for r in order.get("refunds") or []:
        for rl in r.get("refund_line_items") or []:
            out[rl["line_item_id"]] = out.get(rl["line_item_id"], 0) + int(rl["quantity"])
    return out


def left_to_ship(quantity: int, shipped_qty: int, refunded_qty: int) -> int:
    """Units neither shipped nor refunded. A refund takes units still in the warehouse first
    (the order shrinks), then shipped ones (a return) ([INF])."""
    return max(0, quantity - shipped_qty - refunded_qty)


def returned(quantity: int, shipped_qty: int, refunded_qty: int) -> int:
    """Units of shipped goods the refunds so far have taken back (see left_to_ship)."""
    return max(0, refunded_qty + shipped_qty - quantity)


def settle_lines(order: dict[str, Any]) -> None:
    """Each line's ``fulfillable_quantity`` / ``fulfillment_status`` and the order's
    ``fulfillment_status`` from its fulfilments, refunds and cancellation."""
    cancelled = order.get("cancelled_status") == "cancelled"
    sent, back = shipped(order), refunded(order)
    any_sent = any_left = False
    for li in order["line_items"]:
        out, ref = sent.get(li["id"], 0), back.get(li["id"], 0)
        left = left_to_ship(li["quantity"], out, ref)
        li["fulfillable_quantity"] = 0 if cancelled else left
        any_sent = any_sent or out > 0
        any_left = any_left or left > 0
        if li["fulfillment_status"] == "restock":
            continue            # a restocked line stays so ([DOC-EX])
        if out == 0:
            li["fulfillment_status"] = "notfulfilled"
        else:
            # "partial" on a line is [INF] (Shopify's spelling); "fulfilled" is [INF] too.
            li["fulfillment_status"] = "partial" if left and not cancelled else "fulfilled"
    if order["line_items"] and all(li["fulfillment_status"] == "restock" for li in order["line_items"]):
        order["fulfillment_status"] = "restocked"
    elif not any_sent:
        order["fulfillment_status"] = "notfulfilled"
    else:
        order["fulfillment_status"] = "partial" if any_left else "fulfilled"


# -- tax ----------------------------------------------------------------------------------
def tax_rate(value: Any, field: str) -> Decimal:
    """A tax rate as a fraction (0.1 = 10 %); FactError naming ``field`` otherwise."""
    try:
        rate = dec(value)
    except ArithmeticError:
        raise FactError(field, f"{value!r} is not a number") from None
    if not Decimal(0) <= rate < Decimal(1):
        raise FactError(field, f"{value!r} must be a fraction from 0 to below 1 (0.1 = 10 %)")
    return rate


def line_taxes(line: dict[str, Any], asked: list[dict[str, Any]], taxes_included: bool,
               field: str) -> list[dict[str, Any]]:
    """The line's ``tax_lines`` as Haravan writes them (``title``, ``rate``, ``price``).

    Each tax is on the line's own amount (``price`` × ``quantity``, already net of the line's
    promotion); order-level discount codes are not spread over the lines first ([UNK]). A tax
    line that gives its ``price`` keeps it. With ``taxes_included`` the tax is the part of the
    amount that is tax (amount × rate / (1 + rate)), else it is added on top."""
    if not isinstance(asked, list):
        raise FactError(field, "must be a list of {title, rate}")
    base = dec(line["price"]) * line["quantity"]
    out = []
    for n, t in enumerate(asked):
        if not isinstance(t, dict):
            raise FactError(f"{field}[{n}]", "must be an object with title and rate")
        rate = tax_rate(t.get("rate"), f"{field}[{n}].rate")
        if t.get("price") not in (None, ""):
            price = dec(t["price"])
        elif taxes_included:
            price = whole_dong(base * rate / (1 + rate))
        else:
            price = whole_dong(base * rate)
        out.append({"title": t.get("title") or "VAT", "rate": float(rate), "price": money(price)})
    return out


def order_tax_lines(line_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The order's ``tax_lines``: the lines' taxes summed by (title, rate)."""
    sums: dict[tuple[str, float], Decimal] = {}
    for li in line_items:
        for t in li.get("tax_lines") or []:
            key = (t["title"], t["rate"])
            sums[key] = sums.get(key, Decimal(0)) + dec(t["price"])
    return [{"title": title, "rate": rate, "price": money(amount)} for (title, rate), amount in sums.items()]

