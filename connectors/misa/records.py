"""Records as the engine sees them: MISA's own field names, numbers as Decimal, codes and names
by hexaflow.text (every ``*_code`` a canonical code, every ``*_name`` a canonical name)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

from hexaflow.money import to_decimal
from hexaflow.text import canonical_code, canonical_name

# Numeric fields that are not money or quantities keep their int form.
_NUMERIC_SUFFIXES = ("price", "amount", "balance", "quantity", "price1", "price2", "price3",
                     "_stock", "rate")
_NOT_DECIMAL = frozenset({"exchange_rate_operator"})


def normalise(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if (key not in _NOT_DECIMAL and key.endswith(_NUMERIC_SUFFIXES)
                and isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)):
            out[key] = to_decimal(value)
        else:
            out[key] = canonical_text(key, value)
    return out


def canonical_text(field: str, value: Any) -> Any:
    """``value`` of ``field`` as records carry it: a ``*_code`` a canonical code, a ``*_name``
    (units are matched by ``unit_name``) a canonical name, anything else unchanged."""
    if field.endswith("_code"):
        return canonical_code(value)
    if field.endswith("_name"):
        return canonical_name(value)
    return value
