"""Money is Decimal end to end; this is the one place that rounds it.

VND has no minor unit in accounting documents, so amounts are rounded to the đồng
(0 decimal places) with ROUND_HALF_UP, the rounding an accountant does by hand.
"""
from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from hexaflow.errors import MoneyError

_QUANTA = {places: Decimal(1).scaleb(-places) for places in range(0, 7)}


def to_decimal(value: Any) -> Decimal:
    """A Decimal from an int, str, Decimal or float (floats via their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise MoneyError(f"not a number: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(repr(value))
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise MoneyError(f"not a number: {value!r}") from None
    if not number.is_finite():       # NaN, Infinity, and JSON's 1e400 read as a float
        raise MoneyError(f"not a finite number: {value!r}")
    return number


def round_money(value: Any, places: int = 0) -> Decimal:
    """Round to ``places`` decimals (default: whole đồng), half up."""
    if type(value) is not Decimal:
        value = to_decimal(value)
    try:
        return value.quantize(_QUANTA[places], ROUND_HALF_UP)   # positional: twice as fast
    except InvalidOperation:
        # More digits than Decimal's 28 (e.g. 1e30), or a non-finite value computed earlier.
        raise MoneyError(f"{value} is too large to be an amount") from None


def allocate(total: Any, weights: list[Any]) -> list[Decimal]:
    """Split ``total`` (whole đồng) over ``weights`` pro rata.

    Each share is rounded down to the đồng; the remainder goes to the largest weight (the
    first one when several are equal), so the shares always add up to ``total`` exactly.
    """
    total_d = round_money(total)
    ws = [to_decimal(w) for w in weights]
    if not ws:
        if total_d:
            raise MoneyError(f"cannot allocate {total_d} over no lines")
        return []
    if any(w < 0 for w in ws):
        raise MoneyError("cannot allocate over negative weights")
    weight_sum = sum(ws)
    if weight_sum == 0:
        shares = [Decimal(0)] * len(ws)
    else:
        shares = [(total_d * w / weight_sum).to_integral_value(ROUND_FLOOR) for w in ws]
    largest = max(range(len(ws)), key=lambda i: (ws[i], -i))
    shares[largest] += total_d - sum(shares)
    return shares


def to_json_number(value: Decimal) -> int | float:
    """The JSON form of a Decimal: an int when whole, else a float."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)
