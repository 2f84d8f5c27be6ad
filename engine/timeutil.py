"""Timestamps: tolerant parsing, and local time in the tenant's zone.

Sources send ISO-8601 with 1–7 fractional digits and a ``Z`` or offset; datetime.fromisoformat
accepts only 0, 3 or 6 digits before Python 3.11's extended parser, and never 7, so digits are
normalised to 6 first. Every datetime returned is timezone-aware.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

_FRACTION = re.compile(r"(\.\d+)")

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


@lru_cache(maxsize=None)     # a handful of zone names per process; looked up per timestamp
def get_zone(name: str) -> tzinfo:
    """A tzinfo by IANA name; Asia/Ho_Chi_Minh falls back to fixed UTC+7 (no DST since 1975)
    on machines without a time zone database."""
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:
        if name in ("Asia/Ho_Chi_Minh", "Asia/Saigon", "Asia/Bangkok", "Asia/Jakarta"):
            return timezone(timedelta(hours=7), name)
        raise ValueError(f"unknown time zone {name!r}") from None


def parse_datetime(value: str | datetime | date) -> datetime:
    """An aware datetime from ISO-8601 text; a value without offset is taken as UTC."""
    if type(value) is str and len(value) == 27 and value[19] == "." and value[26] == "Z":
        # The canonical form sources are normalised to (2024-06-10T03:15:22.481234Z): six
        # digits already, so only the Z needs rewriting. Anything odd takes the full path below.
        try:
            return datetime.fromisoformat(value[:26] + "+00:00")
        except ValueError:
            pass
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        match = _FRACTION.search(text)
        if match:
            digits = match.group(1)[1:]
            text = text[:match.start()] + "." + (digits + "000000")[:6] + text[match.end():]
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def to_zone(value: str | datetime, zone: str = DEFAULT_TIMEZONE) -> datetime:
    try:
        return parse_datetime(value).astimezone(get_zone(zone))
    except OverflowError:    # 0001-01-01T00:00:00+14:00 has no UTC time, nor a local one
        raise ValueError(f"timestamp out of range: {value!r}") from None


def format_utc(dt: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and Z, the way shop APIs write timestamps."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{dt.astimezone(timezone.utc).microsecond // 1000:03d}Z"
