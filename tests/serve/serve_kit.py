"""Sandboxes, a shop and ``hexaflow serve`` in-process, for the receiver tests.

Each test gets fresh sandboxes (``start_sandboxes(data="empty")``: webhook registrations cannot
be withdrawn, so they must not outlive a test) and starts serve on a loopback thread with the
packaged flows it needs. Every wait is bounded.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from hexaflow.connectors.commands import start_sandboxes
from hexaflow.connectors.haravan.webhooks import sign
from hexaflow.runner import load_plan
from hexaflow.serve import HookServer
from hexaflow.state import open_store

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
CREDENTIALS = {"HARAVAN_TOKEN": "serve-test-token", "HARAVAN_WEBHOOK_SECRET": "serve-test-webhook-secret",
               "MISA_APP_ID": "serve-test-app", "MISA_ACCESS_CODE": "serve-test-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
TENANT = "default"
TIMEOUT = 15.0
# Items the company keeps in MISA for the SKUs the tests sell.
ITEMS = {"AO-THUN-M": ("Áo thun cotton", "Cái", 250000), "QUAN-JEAN-32": ("Quần jean slim", "Cái", 450000)}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


class Shop:
    """The shop on Haravan, the company in MISA, and the receiver's URL."""

    def __init__(self, haravan_url: str, misa_url: str, config: dict[str, str], state: Path):
        self.haravan_url, self.misa_url, self.config, self.state = haravan_url, misa_url, config, state
        self.http = httpx.Client(timeout=TIMEOUT)
        self.auth = {"Authorization": f"Bearer {config['HARAVAN_TOKEN']}"}
        self.server: HookServer | None = None

    # -- the shop ----------------------------------------------------------------------------
    def create_customer(self, **fields: Any) -> dict:
        answer = self.http.post(f"{self.haravan_url}/com/customers.json", json={"customer": fields},
                                headers=self.auth)
        assert answer.status_code == 201, answer.text
        return answer.json()["customer"]

    def create_order(self, customer: dict, skus: tuple[str, ...] = ("AO-THUN-M",)) -> dict:
        lines = [{"sku": sku, "title": ITEMS.get(sku, ("Hàng lạ", "", 100000))[0],
                  "price": ITEMS.get(sku, ("", "", 100000))[2], "quantity": 1} for sku in skus]
        body = {"gateway": "Bank transfer", "customer": {"id": customer["id"]}, "line_items": lines}
        answer = self.http.post(f"{self.haravan_url}/com/orders.json", json={"order": body},
                                headers=self.auth)
        assert answer.status_code == 201, answer.text
        return answer.json()["order"]

    def lan(self) -> dict:
        return self.create_customer(first_name="Lan", last_name="Nguyễn", email="lan@example.com",
                                    phone="0909123456")

    def delivery(self, order: dict, topic: str = "orders/create",
                 secret: str | None = None) -> tuple[bytes, dict[str, str]]:
        """A webhook as Haravan sends it: the bare resource, signed over the raw bytes."""
        raw = json.dumps(order, ensure_ascii=False).encode("utf-8")
        key = CREDENTIALS["HARAVAN_WEBHOOK_SECRET"] if secret is None else secret
        return raw, {"Content-Type": "application/json", "X-Haravan-Topic": topic,
                     "X-Haravan-Org-Id": "1000", "X-Haravan-Hmacsha256": sign(raw, key)}

    def post_hook(self, connector: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
        assert self.server is not None
        return self.http.post(self.server.hook_url(connector), content=raw, headers=headers)

    # -- the company in AMIS -------------------------------------------------------------------
    def seed_items(self) -> None:
        entries = [{"dictionary_type": 3, "inventory_item_code": sku, "inventory_item_name": name,
                    "inventory_item_type": 0, "unit_name": unit, "unit_price": price}
                   for sku, (name, unit, price) in ITEMS.items()]
        answer = self.http.post(f"{self.misa_url}/_sandbox/dictionary", json={"dictionary": entries})
        assert answer.status_code == 200, answer.text

    def requests(self) -> dict[str, dict]:
        """refno_finance → request (one per org_refid)."""
        return {r["refno_finance"]: r for r in self.request_rows()}

    def request_rows(self) -> list[dict]:
        return self.http.get(f"{self.misa_url}/_sandbox/requests").json()["requests"]

    def vouchers_sent(self) -> int:
        calls = self.http.get(f"{self.misa_url}/_sandbox/calls").json()["calls"]
        return sum(c.get("vouchers", 0) for c in calls if c["function"] == "save")

    def misa_options(self, **options: Any) -> None:
        assert self.http.post(f"{self.misa_url}/_sandbox/options", json=options).status_code == 200

    # -- hexaflow's state ----------------------------------------------------------------------
    def ledger(self, flow: str = "orders") -> list:
        store = open_store(str(self.state))
        try:
            return store.entries(TENANT, flow)
        finally:
            store.close()

    def inbox(self) -> list[dict]:
        store = open_store(str(self.state))
        try:
            return store.inbox(TENANT)
        finally:
            store.close()

    def dead_letters(self) -> list[dict]:
        store = open_store(str(self.state))
        try:
            return store.dead_letters(TENANT)
        finally:
            store.close()

    def serve(self, *flows: str, interval: float = 0.0) -> HookServer:
        plans = [load_plan(MAPPINGS / f"{flow}.yaml") for flow in flows]
        self.server = HookServer.single(plans, tenant=TENANT, config=self.config, state=str(self.state),
                                 port=0, interval=interval).start()
        return self.server
