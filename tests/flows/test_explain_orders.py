"""``hexaflow explain`` on the packaged orders flow: one case per combination of financial,
fulfilment and cancelled status (and what MISA already holds) that ``mappings/orders.yaml``
tells apart, each checking the routes that fire, the document keys and one payload total;
and ``--id`` against the Haravan sandbox on loopback."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
import pytest

from hexaflow.connectors.haravan.sandbox import HaravanSandbox
from hexaflow.connectors.sandbox_server import SandboxServer
from hexaflow.ledger_rows import LedgerWrite, Outcome, RowRef
from hexaflow.state import open_store

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
ORDERS = str(MAPPINGS / "orders.yaml")
FIXTURES = MAPPINGS / "fixtures"
ID = "1235745999"

# (case, earlier states the ledger already holds, the state explained,
#  routes that fire, keys, (route, payload total))
CASES = [
    ("pending, not fulfilled: a sales order, then nothing until paid or delivered",
     [], "order_new_cod", ["sales_order", "awaiting_payment_or_delivery"],
     {"sales_order": f"DH_{ID}"}, ("sales_order", 880000)),
    ("partially paid counts as not paid yet",
     [], {"from": "order_new_cod", "financial_status": "partially_paid"},
     ["sales_order", "awaiting_payment_or_delivery"], {"sales_order": f"DH_{ID}"},
     ("sales_order", 880000)),
    ("paid before delivery: a sales order and a receipt",
     [], "order_prepaid_bank", ["sales_order", "receipt"],
     {"sales_order": f"DH_{ID}", "receipt": f"PT_{ID}"}, ("receipt", 880000)),
    ("paid and delivered at once: a sales voucher with its receipt",
     [], "order_paid_fulfilled", ["sales_voucher_paid"],
     {"sales_voucher_paid": f"BH_{ID}"}, ("sales_voucher_paid", 880000)),
    ("delivered, not paid (COD): an unpaid sales voucher",
     [], "order_cod_delivered", ["sales_voucher"],
     {"sales_voucher": f"BH_{ID}"}, ("sales_voucher", 880000)),
    ("COD collected after the unpaid sales voucher: a receipt",
     ["order_cod_delivered"], "order_cod_collected", ["sales_voucher", "receipt"],
     {"receipt": f"PT_{ID}", "sales_voucher": f"BH_{ID}"}, ("receipt", 880000)),
    ("delivered after a prepayment: an unpaid sales voucher, the receipt exists",
     ["order_prepaid_bank"], "order_paid_fulfilled", ["sales_voucher", "receipt"],
     {"sales_voucher": f"BH_{ID}", "receipt": f"PT_{ID}"}, ("sales_voucher", 880000)),
    ("cancelled unpaid before delivery: the sales order is withdrawn",
     ["order_new_cod"], "order_cancelled_unpaid", ["withdraw_sales_order"],
     {"withdraw_sales_order": f"DH_{ID}"}, None),
    ("cancelled and refunded before delivery: withdrawn, and the money paid back",
     ["order_prepaid_bank"], "order_cancelled_paid", ["receipt", "payment", "withdraw_sales_order"],
     {"receipt": f"PT_{ID}", "withdraw_sales_order": f"DH_{ID}", "payment": f"PC_{ID}"},
     ("payment", 880000)),
    ("cancelled after delivery (COD refused): a sales return",
     ["order_cod_delivered"], "order_cod_refused", ["sales_voucher", "cancel_return"],
     {"sales_voucher": f"BH_{ID}", "cancel_return": f"BTL_{ID}"}, ("cancel_return", 880000)),
    ("partly refunded after delivery: a payment and a return of the line",
     ["order_paid_fulfilled"], "order_partially_returned",
     ["sales_voucher_paid", "payment", "sales_return"],
     {"sales_voucher_paid": f"BH_{ID}", "payment": f"PC_{ID}",
      "sales_return": f"BTL_{ID}"}, ("sales_return", 236111)),
    ("cancelled before it was ever synced: nothing",
     [], "order_cancelled_paid", ["cancelled_before_sync"], {}, None),
]


def _record(tmp_path: Path, state: str | dict) -> str:
    """A fixture file, or a fixture with some fields changed (written to tmp_path)."""
    if isinstance(state, str):
        return str(FIXTURES / f"{state}.json")
    data = json.loads((FIXTURES / f"{state['from']}.json").read_text(encoding="utf-8"))
    data.update({k: v for k, v in state.items() if k != "from"})
    path = tmp_path / "record.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _explain(cli, *args: str) -> dict:
    result = cli("explain", ORDERS, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _accept(state: Path, explained: dict) -> None:
    """Put what a run would send into the ledger, as MISA accepted it."""
    store = open_store(str(state))
    try:
        for doc in explained["documents"]:
            if doc["decision"] != "send":
                continue
            for item in [*doc["ensure"], doc]:
                if item["decision"] != "send":
                    continue
                connector, document = item["target"].split("/")
                ref = RowRef("default", "orders", item["route"], item["key"])
                store.plan(LedgerWrite(ref, connector, document, item["action"],
                                       explained["record_id"], explained["version"],
                                       item["payload"]))
                store.mark(ref, Outcome("accepted"))
    finally:
        store.close()


@pytest.mark.parametrize("case,before,state,routes,keys,total", CASES, ids=[c[0] for c in CASES])
def test_explain_each_order_state(cli, tmp_path, case, before, state, routes, keys, total):
    for earlier in before:
        _accept(cli.state, _explain(cli, "--record", _record(tmp_path, earlier)))
    out = _explain(cli, "--record", _record(tmp_path, state))
    assert out["record_id"] == ID
    assert out["matched"] == routes
    fired = {r["route"] for r in out["routes"] if r["fires"]}
    assert fired == set(routes)
    assert {d["route"]: d["key"] for d in out["documents"]} == keys
    if total is not None:
        route, amount = total
        payload = next(d["payload"] for d in out["documents"] if d["route"] == route)
        assert payload["total_amount"] == amount
    # what the ledger already holds is history, and is not sent again unchanged
    held = set(out["history"])
    for doc in out["documents"]:
        if doc["route"] in held and doc["action"] == "upsert":
            assert (doc["decision"], doc["reason"]) == ("skip", "already written")
        elif doc["action"] == "upsert":
            assert (doc["decision"], doc["reason"]) == ("send", "new")


def test_explain_shows_why_a_route_does_not_fire(cli):
    result = cli("explain", ORDERS, "--record", str(FIXTURES / "order_cod_delivered.json"))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "✓ sales_voucher" in text and "✗ sales_voucher_paid" in text
    assert "✗ combined = false" in text
    assert "decision: send (new)" in text
    assert "key BH_1235745999" in text


# -- --id against the Haravan sandbox ---------------------------------------------------------
@pytest.fixture
def haravan():
    app = HaravanSandbox(token="explain-" + secrets.token_hex(8), webhook_secret="whsec-explain",
                         data="empty", orders=0, rate_limit=False, seed=1)
    server = SandboxServer(app).start()
    try:
        yield server.url, app.token
    finally:
        server.stop()


def test_explain_by_id_reads_the_order_from_haravan(cli, haravan):
    url, token = haravan
    env = {"HARAVAN_BASE_URL": url, "HARAVAN_TOKEN": token, "HARAVAN_RETRY_BASE_DELAY": "0.02",
           "HARAVAN_TIMEOUT_SECONDS": "5", "HARAVAN_CALLS_PER_SECOND": "1000"}
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        answer = http.post("/com/orders.json", json={"order": {
            "gateway": "Bank transfer", "location_id": 963414,
            "line_items": [{"sku": "AO-THUN-M", "title": "Áo thun cotton", "price": 250000,
                            "quantity": 2}]}})
        assert answer.status_code == 201, answer.text
        order = answer.json()["order"]
        order_id = str(order["id"])

        result = cli("explain", ORDERS, "--id", order_id, "--format", "json", env=env)
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["record_id"] == order_id
        assert out["matched"] == ["sales_order", "awaiting_payment_or_delivery"]
        assert out["documents"][0]["key"] == f"DH_{order_id}"
        assert out["documents"][0]["payload"]["total_amount"] == 500000
        assert token not in result.output

        assert http.post(f"/_sandbox/orders/{order_id}/pay", json={}).status_code == 200
        assert http.post(f"/_sandbox/orders/{order_id}/fulfill", json={}).status_code == 200
        result = cli("explain", ORDERS, "--id", order_id, env=env)
        assert result.exit_code == 0, result.output
        assert f"key BH_{order_id}" in result.output
        assert "matched: sales_voucher_paid" in result.output
        assert token not in result.output

    missing = cli("explain", ORDERS, "--id", "999999999", env=env)
    assert missing.exit_code == 1
    assert "haravan has no orders record with id 999999999" in missing.output
    assert token not in missing.output


def test_explain_by_id_without_credentials_names_the_variable(cli):
    result = cli("explain", ORDERS, "--id", "1", env={"HARAVAN_TOKEN": ""})
    assert result.exit_code == 1
    assert "HARAVAN_TOKEN is not set" in result.output
