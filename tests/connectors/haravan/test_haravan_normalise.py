"""Normalisation rules from quirks.yaml, on the reference's own example values."""
from __future__ import annotations

import unicodedata
from decimal import Decimal

import pytest

from hexaflow.connectors.haravan.normalise import loads, normalise, normalise_timestamp
from hexaflow.connectors.haravan.pagination import WalkError, iter_pages
from hexaflow.timeutil import parse_datetime

EXAMPLE = b"""{"id": 1235745999, "user_id": 200000497867, "financial_status": "partiallypaid",
 "fulfillment_status": "notfulfilled", "total_price": 880000.0, "subtotal_price": 900000,
 "created_at": "2024-06-10T03:15:22.481Z", "updated_at": "2024-06-11T09:02:10.1Z",
 "processed_at": "2024-06-11T09:02:03.3618601Z",
 "transactions": [{"kind": "Capture", "amount": 880000.0, "status": "Th\\u00e0nh c\\u00f4ng"}],
 "customer": {"state": "Disabled", "total_spent": 2150000.1234},
 "line_items": [{"fulfillment_status": "notfulfilled", "price": 250000.0, "quantity": 2}],
 "gateway": "Thanh to\\u00e1n khi giao h\\u00e0ng (COD)", "custom": "Keep Me"}"""


def test_enum_aliases_money_ids_and_timestamps():
    order = normalise(loads(EXAMPLE))
    assert order["financial_status"] == "partially_paid"
    assert order["fulfillment_status"] is None
    assert order["line_items"][0]["fulfillment_status"] is None
    assert order["transactions"][0]["kind"] == "capture"
    assert order["transactions"][0]["status"] == "success"
    assert order["customer"]["state"] == "disabled"
    assert order["total_price"] == Decimal("880000.0") and isinstance(order["subtotal_price"], Decimal)
    assert order["customer"]["total_spent"] == Decimal("2150000.1234")
    assert order["user_id"] == 200000497867
    assert order["updated_at"] == "2024-06-11T09:02:10.100000Z"
    assert order["processed_at"] == "2024-06-11T09:02:03.361860Z"
    assert order["created_at"] == "2024-06-10T03:15:22.481000Z"
    assert order["gateway"] == "Thanh toán khi giao hàng (COD)" and order["custom"] == "Keep Me"
    assert order["line_items"][0]["quantity"] == 2


def test_unknown_enum_values_are_kept():
    assert normalise({"financial_status": "Authorized_New"})["financial_status"] == "authorized_new"


def test_pagination_learns_the_page_size_and_stops_on_a_short_page():
    data = [{"id": i, "updated_at": f"t{i:04d}"} for i in range(120)]
    asked = []

    def fetch(q):
        asked.append(dict(q))
        start = (q["page"] - 1) * 30          # a server that caps at 30 whatever is asked
        return data[start:start + 30]
    pages = list(iter_pages(fetch, {}, 250))
    assert [len(p) for p in pages] == [30, 30, 30, 30]
    assert asked[-1]["page"] == 5 and len(asked) == 5


def test_pagination_stops_with_an_error_when_the_server_ignores_the_page_number():
    calls = []

    def fetch(q):
        calls.append(q["page"])
        return [{"id": i, "updated_at": "x"} for i in range(50)]
    pages = []
    with pytest.raises(WalkError, match="the server ignores `page`") as caught:
        for page in iter_pages(fetch, {}, 50):
            pages.append(page)
    # One page of records, never twice; an error instead of a read that looks complete.
    assert len(pages) == 1 and len(calls) <= 25 and caught.value.param == "page"


def test_a_walk_accepts_a_server_that_compares_whole_seconds():
    # Such a server answers updated_at_min=12:00:07.5 with the records from 12:00:07.0 on: they
    # are not taken for a server that ignores the parameter, nor returned twice.
    data = [{"id": i, "updated_at": f"2026-01-01T12:00:{i // 4:02d}.{(i % 4) * 25:02d}Z"}
            for i in range(200)]

    def fetch(q):
        floor = q.get("updated_at_min")
        whole = parse_datetime(floor).replace(microsecond=0) if floor else None
        rows = [r for r in data if whole is None or parse_datetime(r["updated_at"]) >= whole]
        start = (q["page"] - 1) * 50
        return rows[start:start + 50]
    ids = [r["id"] for p in iter_pages(fetch, {}, 50, walk_field="updated_at") for r in p]
    assert sorted(ids) == ids == list(range(200))


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"])
def test_timestamps_without_a_utc_time_are_kept_as_they_came(stamp):
    # Both exist as local times but not in UTC (astimezone overflows): the record is still
    # read, and the flow that maps it reports the field.
    assert normalise_timestamp(stamp) == stamp
    order = normalise({"id": 1, "created_at": stamp, "updated_at": "2024-06-11T09:02:10.1Z"})
    assert order == {"id": 1, "created_at": stamp, "updated_at": "2024-06-11T09:02:10.100000Z"}


def test_walking_by_updated_at_returns_each_record_once_with_ties_spelled_differently():
    # Groups of three records share an instant, each spelled with other fractional digits,
    # so the window restarts inside a group; the walk keeps only the keys it can meet again.
    spellings = ("{}.1Z", "{}.10Z", "{}.1000Z")
    data = [{"id": i, "updated_at": spellings[i % 3].format(
        f"2026-01-01T00:{(i // 3) // 60:02d}:{(i // 3) % 60:02d}")} for i in range(300)]

    def fetch(q):
        floor = parse_datetime(q["updated_at_min"]) if q.get("updated_at_min") else None
        rows = [r for r in data if floor is None or parse_datetime(r["updated_at"]) >= floor]
        start = (q["page"] - 1) * 50
        return rows[start:start + 50]
    pages = list(iter_pages(fetch, {}, 50, walk_field="updated_at"))
    ids = [r["id"] for p in pages for r in p]
    assert sorted(ids) == list(range(300))


def test_codes_and_names_are_read_canonical_at_any_depth():
    decomposed = unicodedata.normalize("NFD", "Nguyễn")
    order = normalise({"name": " #1001 ", "note": " kept  as is ", "line_items": [
        {"sku": unicodedata.normalize("NFD", " ÁO-M "), "barcode": "893 ", "title": "Áo  thun "}],
        "customer": {"first_name": " Lan ", "last_name": decomposed, "email": " a@b.vn"}})
    assert order["line_items"] == [{"sku": "ÁO-M", "barcode": "893", "title": "Áo thun"}]
    assert order["customer"] == {"first_name": "Lan", "last_name": "Nguyễn", "email": " a@b.vn"}
    assert order["name"] == "#1001" and order["note"] == " kept  as is "
