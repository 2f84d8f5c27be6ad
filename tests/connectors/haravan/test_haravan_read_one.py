"""``HaravanConnector.read_one``: one record by id (GET /com/<resource>/<id>.json), shaped
exactly as ``read`` yields it (``hexaflow explain --id`` relies on it)."""
from __future__ import annotations

import pytest

from hexaflow.connector import ConnectorError


def test_an_order_read_by_id_is_the_order_read_from_the_list(shop, read_all):
    connector = shop.connector()
    try:
        _, orders = read_all(connector, "orders")
        wanted = orders[3]
        one = connector.read_one("orders", str(wanted["id"]))
        assert one == wanted
        assert connector.can_read_one()
    finally:
        connector.close()
    assert any(path.endswith(f"/orders/{wanted['id']}.json") for _, path, _ in shop.app.requests)


@pytest.mark.parametrize("resource", ["customers", "products", "locations"])
def test_other_resources_read_by_id(shop, read_all, resource):
    connector = shop.connector()
    try:
        _, records = read_all(connector, resource)
        assert connector.read_one(resource, str(records[0]["id"])) == records[0]
    finally:
        connector.close()


def test_an_unknown_id_is_none(shop):
    connector = shop.connector()
    try:
        assert connector.read_one("orders", "999999999") is None
    finally:
        connector.close()


def test_ids_are_numbers_and_only_some_resources_have_single_records(shop):
    connector = shop.connector()
    try:
        with pytest.raises(ConnectorError, match="ids are numbers"):
            connector.read_one("orders", "../shop")
        with pytest.raises(ConnectorError, match="ids are numbers"):
            connector.read_one("orders", "1²")          # a digit to str.isdigit, not to int()
        with pytest.raises(ConnectorError, match="cannot fetch one 'inventory_locations'"):
            connector.read_one("inventory_locations", "1")
    finally:
        connector.close()


def test_a_wrong_token_is_reported_without_the_token(shop):
    connector = shop.connector(HARAVAN_TOKEN="not-the-token-123")
    try:
        with pytest.raises(ConnectorError) as caught:
            connector.read_one("orders", "1")
        assert "not-the-token-123" not in str(caught.value)
        assert "HARAVAN_TOKEN" in str(caught.value)
    finally:
        connector.close()
