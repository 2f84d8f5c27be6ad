"""One format for dictionary keys: the key an order's customer ensure renders, the customers
flow's key for the same customer and what MisaConnector.exists reads are the same thing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.state import open_store
from connectors.misa.connector import dictionary_key, parse_dictionary_key
from misa_helpers import ACCESS_CODE, APP_ID, ORG

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


ENSURING_FLOW = """
flow: orders
source: {connector: file, resource: records, params: {path: in.jsonl}, as: order}
routes:
  - name: receipt
    target: {connector: misa, document: voucher}
    key: "PT_<<order.id>>"
    ensure:
      - name: customer
        target: {connector: misa, document: dictionary}
        key: "<<order.customer_code>>"
        fields: {dictionary_type: 1, account_object_code: "=order.customer_code",
                 account_object_name: Lan}
    fields: {voucher_type: 5, org_refid: "u-<<order.id>>", total_amount: 1,
             detail: [{amount: 1}]}
"""


def test_a_run_does_not_create_again_a_customer_misa_holds(sandbox, admin, tmp_path, write):
    """The order flow's ensure finds, through exists(), the customer another flow created (here
    with a ledger that knows nothing of it: another flow's store, or a lost one)."""
    app, server = sandbox
    customer = customers_flow_document({"id": 77, "email": "a@b.vn"})
    assert admin.post("dictionary", {"dictionary": [customer.payload]})["errors"] == []
    write("in.jsonl", json.dumps({"id": 1, "customer_code": customer.key}) + "\n")
    plan = load_plan(write("flow.yaml", ENSURING_FLOW))
    store = open_store(str(tmp_path / "state.db"))
    config = {"MISA_BASE_URL": server.url, "MISA_APP_ID": APP_ID, "MISA_ACCESS_CODE": ACCESS_CODE,
              "MISA_ORG_COMPANY_CODE": ORG}
    connectors = Connectors("shop1", plan.base_dir, config=config)
    try:
        run_flow(plan, tenant="shop1", store=store, connectors=connectors)
    finally:
        connectors.close()
    ensured = store.entry("shop1", "orders", "receipt.customer", customer.key)
    assert ensured is not None and ensured.is_ensure
    assert ensured.message == "already in the target"
    assert app.dictionary_received[f"1:{customer.key}"] == 0       # never sent
