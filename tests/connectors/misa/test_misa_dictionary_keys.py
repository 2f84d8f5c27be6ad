"""One format for dictionary keys: the key an order's customer ensure renders, the customers
flow's key for the same customer and what MisaConnector.exists reads are the same thing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexaflow.runner import load_plan
from connectors.misa.connector import dictionary_key, parse_dictionary_key

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"


def order_ensure(fixture: str):
    plan = load_plan(MAPPINGS / "orders.yaml")
    order = json.loads((MAPPINGS / "fixtures" / fixture).read_text(encoding="utf-8"))
    docs = plan.evaluate(order).documents
    (customer,) = {e.key: e for d in docs for e in d.ensure}.values()
    return order, customer


def customers_flow_document(customer: dict):
    (doc,) = load_plan(MAPPINGS / "customers.yaml").evaluate(customer).documents
    return doc


@pytest.mark.parametrize("key, parsed", [
    ("HRV-1036847352", (1, "HRV-1036847352")),       # bare code: a customer
    ("1:HRV-7", (1, "HRV-7")),
    ("3:HOP-QUA", (3, "HOP-QUA")),
    ("dictionary:5:KHO_HN", (5, "KHO_HN")),         # a target ref reads the same way
    ("dictionary:KHO_HN", None),                     # a target ref always names its type
    ("2:X", None),                                   # a type hexaflow does not read back
    ("", None),
])
def test_dictionary_keys_parse_one_way(key, parsed):
    assert parse_dictionary_key(key) == parsed


def test_dictionary_key_is_the_inverse_of_parsing():
    assert dictionary_key(1, "KHACHLE") == "KHACHLE"
    assert parse_dictionary_key(dictionary_key(3, "HOP-QUA")) == (3, "HOP-QUA")


def test_exists_answers_for_the_key_the_order_flow_ensures(connector, admin):
    _order, ensured = order_ensure("order_new_cod.json")
    assert ensured.key == "HRV-1036847352"
    assert connector.exists("dictionary", ensured.key) is False
    # The customers flow creates the customer first; the order's ensure then finds it.
    customer = {"id": 1036847352, "email": "lan.nguyen@example.com", "first_name": "Lan",
                "last_name": "Nguyễn"}
    entry = customers_flow_document(customer)
    assert admin.post("dictionary", {"dictionary": [entry.payload]})["errors"] == []
    assert connector.exists("dictionary", ensured.key) is True


def test_the_two_flows_name_a_customer_by_the_same_ledger_key():
    order, ensured = order_ensure("order_paid_fulfilled.json")
    doc = customers_flow_document(order["customer"])
    # Same connector, document and key: one ledger row, so whichever flow runs second skips it.
    assert (doc.connector, doc.document, doc.key) == (ensured.connector, ensured.document,
                                                      ensured.key)
    assert doc.payload["account_object_code"] == ensured.payload["account_object_code"] == doc.key
    shared = set(doc.payload) & set(ensured.payload)
    assert set(ensured.payload) - shared == set()       # the ensure sets nothing the flow lacks
