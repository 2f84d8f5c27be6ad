"""Helpers for the MISA connector tests: a real sandbox on loopback, a connector pointed at it,
and a tiny callback receiver that verifies callbacks with ``parse_callback``."""
from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any, Callable

import httpx
import pytest

from hexaflow.connector import AsyncResult, ConnectorContext, WriteItem
from hexaflow.connectors.misa import MisaConnector, handle_callback, org_refid
from hexaflow.connectors.misa.envelope import to_jsonable
from hexaflow.connectors.misa.sandbox import MisaSandbox
from hexaflow.connectors.sandbox_server import (Request, SandboxApp, SandboxServer,
                                                json_response)
from hexaflow.money import round_money

APP_ID = "sandbox-app-test"
ACCESS_CODE = "access-code-secret-123456"
ORG = "0312345678"


@pytest.fixture
def sandbox():
    app = MisaSandbox(app_id=APP_ID, access_code=ACCESS_CODE, org_company_code=ORG,
                      data="demo", seed=1, callback_delay_s=0.01)
    server = SandboxServer(app).start()
    yield app, server
    server.stop()
    app.close()


def make_connector(url: str, **overrides: str) -> MisaConnector:
    config = {"MISA_BASE_URL": url, "MISA_APP_ID": APP_ID, "MISA_ACCESS_CODE": ACCESS_CODE,
              "MISA_ORG_COMPANY_CODE": ORG, **overrides}
    return MisaConnector(ConnectorContext(tenant="shop1", config=config))


@pytest.fixture
def connector(sandbox):
    _app, server = sandbox
    conn = make_connector(server.url)
    yield conn
    conn.close()


class Admin:
    def __init__(self, url: str):
        self.url = url

    def post(self, path: str, body: Any = None) -> Any:
        response = httpx.post(self.url + "/_sandbox/" + path, json=body, timeout=30)
        assert response.status_code < 500, response.text
        return response.json()

    def get(self, path: str) -> Any:
        return httpx.get(self.url + "/_sandbox/" + path, timeout=10).json()

    def requests(self) -> dict[str, dict[str, Any]]:
        return {r["org_refid"]: r for r in self.get("requests")["requests"]}

    def drain(self) -> None:
        assert self.post("drain", {"timeout_s": 15})["idle"]


@pytest.fixture
def admin(sandbox) -> Admin:
    return Admin(sandbox[1].url)


class Raw:
    """Talks to the sandbox the way MISA's own documentation shows."""

    def __init__(self, url: str):
        self.url = url
        answer = httpx.post(url + "/api/oauth/actopen/connect", json={
            "app_id": APP_ID, "access_code": ACCESS_CODE, "org_company_code": ORG}).json()
        self.token = json.loads(answer["Data"])["access_token"]

    def call(self, function: str, body: dict, method: str = "POST") -> dict:
        full = {"app_id": APP_ID, "org_company_code": ORG, **body}
        response = httpx.request(method, f"{self.url}/apir/sync/actopen/{function}",
                                 json=to_jsonable(full),
                                 headers={"X-MISA-AccessToken": self.token})
        assert response.status_code == 200
        return response.json()


@pytest.fixture
def raw(sandbox) -> "Raw":
    return Raw(sandbox[1].url)


class Receiver(SandboxApp):
    """What ``hexaflow serve`` will do: verify, store, acknowledge."""

    name = "misa-callback-receiver"

    def __init__(self, key: str):
        super().__init__()
        self.key = key
        self.results: list[AsyncResult] = []
        self.refused = 0
        self.add("POST", "/misa/callback", self._receive)

    def _receive(self, req: Request):
        status, reply, results = handle_callback(req.body, self.key, app_id=APP_ID,
                                                 org_company_code=ORG)
        with self.lock:
            if status != 200:
                self.refused += 1
            self.results.extend(results)
        return json_response(reply, status)

    def latest(self) -> dict[str, AsyncResult]:
        with self.lock:
            return {r.target_ref: r for r in self.results}


@pytest.fixture
def receiver():
    app = Receiver(APP_ID)
    server = SandboxServer(app).start()
    yield app, server.url + "/misa/callback"
    server.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def sales_voucher(source_id: Any, lines: list[tuple[str, int, int]], *,
                  customer: str = "KH00001", stock: str = "KHO_HCM", vat_rate: int = 8,
                  discount_rate: int = 0, balanced: bool = True,
                  outward: bool = True) -> dict[str, Any]:
    """A sales voucher (13/3531) whose totals are computed from the lines like a mapping would."""
    ref = org_refid("shop1", "sales_voucher", source_id)
    detail = []
    for index, (sku, quantity, price) in enumerate(lines, start=1):
        amount = round_money(Decimal(quantity) * price)
        discount = round_money(amount * discount_rate / Decimal(100))
        vat = round_money((amount - discount) * vat_rate / Decimal(100))
        detail.append({"sort_order": index, "inventory_item_code": sku, "stock_code": stock,
                       "quantity": Decimal(quantity), "unit_price": Decimal(price),
                       "amount": amount, "amount_oc": amount, "discount_rate": discount_rate,
                       "discount_amount": discount, "vat_rate": vat_rate, "vat_amount": vat,
                       "debit_account": "1111", "credit_account": "5111", "vat_account": "33311",
                       "cost_account": "632", "stock_account": "1561",
                       "account_object_code": customer})
    sale = sum(d["amount"] for d in detail)
    discount = sum(d["discount_amount"] for d in detail)
    vat = sum(d["vat_amount"] for d in detail)
    total = sale - discount + vat + (0 if balanced else 1000)
    return {"voucher_type": 13, "reftype": 3531, "org_refid": ref, "refid": ref,
            "org_refno": f"#HRV{source_id}", "refno_finance": f"BH_{source_id}",
            "auto_refno": False, "is_get_new_id": True, "act_voucher_type": 0,
            "refdate": "2026-05-20T10:15:00+07:00", "posted_date": "2026-05-20T10:15:00+07:00",
            "account_object_code": customer, "currency_id": "VND", "exchange_rate": 1,
            "is_sale_with_outward": outward, "total_sale_amount": sale,
            "total_discount_amount": discount, "total_vat_amount": vat, "total_amount": total,
            "detail": detail}


def voucher_item(voucher: dict[str, Any], action: str = "upsert") -> WriteItem:
    return WriteItem(ref=f"item-{voucher['org_refno']}", document="voucher", action=action,
                     key=voucher["refno_finance"], payload=voucher)
