"""What a MISA voucher needs that follows from MISA, not from the integrator's choices.

A flow says what the accountant cares about (customer, lines, accounts, dates, memo); the
connector fills in the rest from the document kind (docs/connectors/misa.md, "What the
connector fills in"). A field the flow sets itself always wins, so a flow can still override
any of these.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from hexaflow.connector import DocumentDraft, StockMove
from hexaflow.money import MoneyError, to_decimal
from hexaflow.text import canonical_code

VOUCHER = "voucher"

# Amounts MISA wants twice: in the voucher's currency (``*_oc``, original currency) and in VND.
# hexaflow writes VND only (exchange rate 1), so the twin is the same amount.
VOUCHER_AMOUNTS = ("total_sale_amount", "total_discount_amount", "total_vat_amount",
                   "total_amount")
LINE_AMOUNTS = ("amount", "discount_amount", "vat_amount")

# Voucher fields MISA needs for a request hexaflow numbers itself (refno_finance) and creates
# afresh (not an edit of a voucher already in AMIS), in VND.
VOUCHER_DEFAULTS: Mapping[str, Any] = {
    "auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
    "currency_id": "VND", "exchange_rate": 1}

# Voucher types whose detail lines carry the exchange-rate operator: sales vouchers (13) and
# sales orders (20), the types whose lines MISA converts per line.
OPERATOR_TYPES = frozenset({13, 20})
LINE_OPERATOR = {"exchange_rate_operator": "*"}


def complete_voucher(draft: DocumentDraft) -> dict[str, Any]:
    """``draft``'s payload with MISA's mechanics filled in. Deletes are left as they are: MISA
    deletes a request by ``org_refid`` and ``voucher_type`` alone."""
    payload = dict(draft.payload)
    if draft.document != VOUCHER or draft.action == "delete":
        return payload
    out = _with_twins(payload, VOUCHER_AMOUNTS)
    # refid is MISA's id of the voucher it creates; hexaflow makes it the request's id.
    if "org_refid" in out:
        out.setdefault("refid", out["org_refid"])
    for name, value in VOUCHER_DEFAULTS.items():
        out.setdefault(name, value)
    extra = LINE_OPERATOR if _voucher_type(out) in OPERATOR_TYPES else {}
    detail = out.get("detail")
    if isinstance(detail, list):
        out["detail"] = [_line(line, extra) if isinstance(line, Mapping) else line
                         for line in detail]
    return out


# How a voucher type moves stock once posted, and the flag that says it does (None: always):
# a sales voucher issues its goods only "with outward" (3530/3531/3537 with is_sale_with_outward),
# a sales return takes them back only "with inward" (restocked); stock vouchers always move.
# The sandbox posts by the same rules (connectors/misa/ledger.py, STOCK_ONLY and _Line.post);
# tests/connectors/misa/test_misa_stock_moves.py checks that what is held is what posting moves.
STOCK_SIGNS: Mapping[int, tuple[int, str | None]] = {
    13: (-1, "is_sale_with_outward"),      # sa_voucher (bán hàng)
    12: (1, "is_return_with_inward"),      # sa_return (hàng bán trả lại)
    7: (1, None), 18: (1, None),           # in_inward (nhập kho), pu_voucher (mua hàng)
    8: (-1, None),                         # in_outward (xuất kho)
}


def voucher_stock_moves(document: str, action: str, payload: Mapping[str, Any]) -> list[StockMove]:
    """The stock a voucher request will move once the accountant generates and posts it: each
    detail line with a warehouse (``stock_code``), an item and a quantity, signed by the voucher
    type (STOCK_SIGNS). A line without ``stock_code`` is not goods (the shipping fee line).
    Withdrawing a request (delete) moves nothing. Codes are canonical (hexaflow.text), as the
    balance list reads them, so a hold and its balance row meet."""
    if document != VOUCHER or action == "delete":
        return []
    rule = STOCK_SIGNS.get(_voucher_type(payload) or 0)
    if rule is None or (rule[1] is not None and not payload.get(rule[1])):
        return []
    moves = []
    for line in payload.get("detail") or []:
        if not isinstance(line, Mapping) or line.get("is_description"):
            continue
        place, item = line.get("stock_code"), line.get("inventory_item_code")
        quantity = _quantity(line.get("main_quantity") or line.get("quantity"))
        if place and item and quantity:
            moves.append(StockMove(str(canonical_code(place)), str(canonical_code(item)),
                                   rule[0] * quantity))
    return moves


def _quantity(value: Any) -> Decimal | None:
    try:
        return to_decimal(value)
    except MoneyError:
        return None             # validation refuses such a line; it holds nothing meanwhile


def _line(line: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = _with_twins(line, LINE_AMOUNTS)
    for name, value in extra.items():
        out.setdefault(name, value)
    return out


def _with_twins(fields: Mapping[str, Any], amounts: tuple[str, ...]) -> dict[str, Any]:
    """``fields`` with each amount's ``*_oc`` twin right after it (unless the flow set it)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        out[name] = value
        if name in amounts and f"{name}_oc" not in fields:
            out[f"{name}_oc"] = value
    return out


def _voucher_type(payload: Mapping[str, Any]) -> int | None:
    try:
        return int(payload.get("voucher_type"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
