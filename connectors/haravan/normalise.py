"""Turn Haravan records into the canonical shape the engine expects, driven by quirks.yaml.

Money becomes Decimal, enum spellings become one canonical value, timestamps become ISO-8601 UTC
with ``Z`` and six fractional digits (so they compare as text and keep the precision Haravan's
7-digit stamps need to tell two changes apart), codes and names follow hexaflow.text (trimmed,
NFC). Ids are left alone: JSON integers are Python ints already, however large.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from hexaflow.connector import loads_json
from hexaflow.money import to_decimal
from hexaflow.text import canonical_code, canonical_name
from hexaflow.timeutil import parse_datetime


@lru_cache(maxsize=1)
def quirks() -> dict[str, Any]:
    """quirks.yaml, loaded once per process."""
    text = resources.files(__package__).joinpath("quirks.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class Rules:
    enum_fields: frozenset[str]
    aliases: dict[str, dict[str, Any]]          # field -> lower-cased spelling -> canonical
    money_fields: frozenset[str]
    timestamp_suffix: str
    timestamp_fields: frozenset[str]
    transaction_status: dict[str, str]
    code_fields: frozenset[str]
    name_fields: frozenset[str]


@lru_cache(maxsize=1)
def rules() -> Rules:
    q = quirks()
    enums = q["enums"]
    return Rules(
        enum_fields=frozenset(enums["fields"]),
        aliases={field: {str(k).lower(): v for k, v in (enums["aliases"].get(field) or {}).items()}
                 for field in enums["fields"]},
        money_fields=frozenset(q["money_fields"]),
        timestamp_suffix=q["timestamp_fields"]["suffix"],
        timestamp_fields=frozenset(q["timestamp_fields"]["extra"]),
        transaction_status={k.lower(): v for k, v in enums["transaction_status"].items()},
        code_fields=frozenset(q["text_fields"]["codes"]),
        name_fields=frozenset(q["text_fields"]["names"]))


def loads(data: bytes | str, max_depth: int | None = None) -> Any:
    """Parse a Haravan body without ever going through binary floats (loads_json)."""
    return loads_json(data, max_depth)


def normalise_enum(field: str, value: Any) -> Any:
    r = rules()
    if field not in r.enum_fields or not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    return r.aliases.get(field, {}).get(lowered, lowered)


def normalise_timestamp(value: Any) -> Any:
    """ISO UTC with Z and microseconds; values that are not timestamps are kept as they came."""
    if not isinstance(value, str) or not value:
        return value
    try:
        return parse_datetime(value).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, OverflowError):
        # OverflowError: 0001-01-01T00:00:00+14:00 and 9999-12-31T23:59:59-12:00 have no UTC
        # time; kept as they came, the flow that reads them reports the record.
        return value


def normalise(record: Any) -> Any:
    """A normalised deep copy of ``record`` (a dict, list or scalar)."""
    r = rules()

    def walk(value: Any) -> Any:
        if isinstance(value, list):
            return [walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        is_transaction = "kind" in value and "amount" in value
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in r.money_fields and isinstance(item, (int, float, str, Decimal)) \
                    and not isinstance(item, bool):
                try:
                    item = to_decimal(item)
                except ValueError:
                    pass
            elif key in r.enum_fields:
                item = normalise_enum(key, item)
            elif key.endswith(r.timestamp_suffix) or key in r.timestamp_fields:
                item = normalise_timestamp(item)
            elif key == "status" and is_transaction and isinstance(item, str):
                item = r.transaction_status.get(item.strip().lower(), item.strip().lower())
            elif key in r.code_fields and isinstance(item, str):
                item = canonical_code(item)
            elif key in r.name_fields and isinstance(item, str):
                item = canonical_name(item)
            elif isinstance(item, (dict, list)):
                item = walk(item)
            out[key] = item
        return out

    return walk(record)
