"""What the MISA connector fills in from the document kind (connectors/misa/mechanics.py), and
that runs, dry runs and explain all show the completed payload."""
from __future__ import annotations

import json

import pytest

from hexaflow.connector import DocumentDraft
from hexaflow.explain import explain_record
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.state import open_store
from connectors.misa.connector import MisaConnector

DEFAULTS = {"auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
            "currency_id": "VND", "exchange_rate": 1}


def complete(payload, document="voucher", action="upsert"):
    return MisaConnector.complete_payload(DocumentDraft(document, action, "K_1", payload, "r"))


CASES = [
    ("a sales order gets its twins, refid, the defaults and the line operator",
     {"voucher_type": 20, "org_refid": "u-1", "total_amount": 100,
      "detail": [{"amount": 90, "discount_amount": 5, "vat_amount": 15, "quantity": 2}]},
     {"voucher_type": 20, "org_refid": "u-1", "refid": "u-1", "total_amount": 100,
      "total_amount_oc": 100, **DEFAULTS,
      "detail": [{"amount": 90, "amount_oc": 90, "discount_amount": 5, "discount_amount_oc": 5,
                  "vat_amount": 15, "vat_amount_oc": 15, "quantity": 2,
                  "exchange_rate_operator": "*"}]}),
    ("a sales voucher (13) has the line operator too",
     {"voucher_type": 13, "detail": [{"amount": 1}]},
     {"voucher_type": 13, **DEFAULTS, "detail": [{"amount": 1, "amount_oc": 1,
                                                  "exchange_rate_operator": "*"}]}),
    ("a receipt (5) has twins but no line operator",
     {"voucher_type": 5, "total_amount": 7, "detail": [{"amount": 7}]},
     {"voucher_type": 5, "total_amount": 7, "total_amount_oc": 7, **DEFAULTS,
      "detail": [{"amount": 7, "amount_oc": 7}]}),
    ("all four voucher totals get a twin",
     {"voucher_type": "12", "total_sale_amount": 1, "total_discount_amount": 2,
      "total_vat_amount": 3, "total_amount": 4},
     {"voucher_type": "12", "total_sale_amount": 1, "total_sale_amount_oc": 1,
      "total_discount_amount": 2, "total_discount_amount_oc": 2, "total_vat_amount": 3,
      "total_vat_amount_oc": 3, "total_amount": 4, "total_amount_oc": 4, **DEFAULTS}),
    ("what the flow sets wins",
     {"voucher_type": 20, "org_refid": "u-1", "refid": "mine", "currency_id": "USD",
      "exchange_rate": 25000, "total_amount": 4, "total_amount_oc": 0.0002,
      "detail": [{"amount": 1, "amount_oc": 2, "exchange_rate_operator": "/"}]},
     {"voucher_type": 20, "org_refid": "u-1", "refid": "mine", "currency_id": "USD",
      "exchange_rate": 25000, "total_amount": 4, "total_amount_oc": 0.0002,
      "auto_refno": False, "is_get_new_id": False, "act_voucher_type": 0,
      "detail": [{"amount": 1, "amount_oc": 2, "exchange_rate_operator": "/"}]}),
    ("unit prices and rates are not amounts: no twin",
     {"voucher_type": 4, "detail": [{"unit_price": 3, "discount_rate": 1, "vat_rate": 8}]},
     {"voucher_type": 4, **DEFAULTS,
      "detail": [{"unit_price": 3, "discount_rate": 1, "vat_rate": 8}]}),
]


@pytest.mark.parametrize("payload, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_connector_fills_in_voucher_mechanics(payload, expected):
    got = complete(payload)
    assert got == expected
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_twins_follow_their_amount():
    got = complete({"voucher_type": 4, "total_amount": 1, "journal_memo": "m"})
    assert list(got)[:3] == ["voucher_type", "total_amount", "total_amount_oc"]


@pytest.mark.parametrize("payload, document, action", [
    ({"voucher_type": 20, "org_refid": "u-1"}, "voucher", "delete"),    # MISA deletes by id alone
    ({"dictionary_type": 1, "account_object_code": "HRV-1"}, "dictionary", "create"),
])
def test_deletes_and_dictionary_entries_are_left_as_the_flow_built_them(payload, document, action):
    draft = dict(payload)
    assert complete(payload, document, action) == draft
    assert payload == draft                       # the flow's own payload is not changed


FLOW = """
flow: vouchers
source: {connector: file, resource: records, params: {path: in.jsonl}, as: rec}
routes:
  - name: receipt
    target: {connector: misa, document: voucher}
    key: "PT_<<rec.id>>"
    fields:
      voucher_type: 5
      org_refid: "u-<<rec.id>>"
      total_amount: "=rec.amount"
      detail:
        - amount: "=rec.amount"
"""
COMPLETED = {"voucher_type": 5, "org_refid": "u-1", "refid": "u-1", "total_amount": 50,
             "total_amount_oc": 50, **DEFAULTS, "detail": [{"amount": 50, "amount_oc": 50}]}


@pytest.fixture
def flow(tmp_path, write):
    write("in.jsonl", json.dumps({"id": 1, "amount": 50}) + "\n")
    return load_plan(write("flow.yaml", FLOW))


def test_a_dry_run_emits_the_completed_payload(flow, tmp_path):
    emitted = []
    store = open_store(str(tmp_path / "state.db"))
    run_flow(flow, tenant="t", store=store, dry_run=True, emit=emitted.append,
             connectors=Connectors("t", flow.base_dir, config={}))
    assert [e["payload"] for e in emitted] == [COMPLETED]


def test_explain_shows_the_completed_payload(flow, tmp_path):
    store = open_store(str(tmp_path / "state.db"))
    result = explain_record(flow, {"id": 1, "amount": 50}, store, "t")
    payloads = [d["payload"] for d in result["documents"]]
    assert json.loads(json.dumps(payloads, default=str)) == [COMPLETED]
