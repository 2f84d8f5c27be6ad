"""A shop and a company for end-to-end tests of the customers and orders flows.

Both sandboxes run in-process on loopback HTTP (``start_sandboxes(data="empty")``). A
:class:`World` acts as the shop (real Haravan routes with the Bearer token, plus the
``/_sandbox/orders/{id}/pay|fulfill`` admin routes staff actions stand for), as the accountant
(MISA's ``/_sandbox/`` admin routes: generate, dictionary) and as the integrator (``hexaflow run``
and ``hexaflow validate`` through the CLI).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from hexaflow.cli import main

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
CREDENTIALS = {"HARAVAN_TOKEN": "e2e-orders-token", "HARAVAN_WEBHOOK_SECRET": "e2e-orders-webhook",
               "MISA_APP_ID": "e2e-orders-app", "MISA_ACCESS_CODE": "e2e-orders-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
TIMEOUT = 10.0
# Items the company keeps in MISA for the SKUs the tests sell (unit from the company setup).
ITEMS = {"AO-THUN-M": ("Áo thun cotton", "Cái", 250000), "QUAN-JEAN-32": ("Quần jean slim", "Cái", 450000),
         "MU-LUOI-TRAI": ("Mũ lưỡi trai", "Chiếc", 150000), "VO-COTTON-Den": ("Vớ cotton", "Đôi", 35000)}
FLOWS = ("customers", "orders")


class World:
    def __init__(self, haravan_url: str, misa_url: str, config: dict[str, str], tmp: Path):
        self.haravan_url, self.misa_url, self.config = haravan_url, misa_url, config
        self.state = tmp / "state.db"
        self.mappings = MAPPINGS
        self.tmp = tmp
        self.http = httpx.Client(timeout=TIMEOUT)
        self.auth = {"Authorization": f"Bearer {config['HARAVAN_TOKEN']}"}

    # -- the company in AMIS ---------------------------------------------------------------
    def seed_items(self) -> None:
        entries = [{"dictionary_type": 3, "inventory_item_code": sku, "inventory_item_name": name,
                    "inventory_item_type": 0, "unit_name": unit, "unit_price": price}
                   for sku, (name, unit, price) in ITEMS.items()]
        answer = self.http.post(f"{self.misa_url}/_sandbox/dictionary", json={"dictionary": entries})
        assert answer.status_code == 200, answer.text

    def dictionary(self) -> dict[str, Any]:
        return self.http.get(f"{self.misa_url}/_sandbox/dictionary").json()

    def account_objects(self) -> dict[str, dict]:
        return {a["account_object_code"]: a for a in self.dictionary()["account_objects"]}

    def requests(self) -> dict[str, dict]:
        """refno_finance → request (one per org_refid)."""
        return {r["refno_finance"]: r for r in self.request_list()}

    def request_list(self) -> list[dict]:
        return self.http.get(f"{self.misa_url}/_sandbox/requests").json()["requests"]

    def drain(self) -> None:
        answer = self.http.post(f"{self.misa_url}/_sandbox/drain", json={"timeout_s": 5})
        assert answer.status_code == 200, answer.text

    def generate(self, org_refid: str) -> dict:
        answer = self.http.post(f"{self.misa_url}/_sandbox/requests/{org_refid}/generate")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_settled(self, timeout: float = TIMEOUT) -> dict[str, dict]:
        """Wait (bounded) until MISA has processed every request; return them by code."""
        deadline = time.monotonic() + timeout
        self.drain()
        while True:
            reqs = self.requests()
            if all(r["status"] != "queued" for r in reqs.values()) or time.monotonic() > deadline:
                return reqs
            time.sleep(0.05)

    # -- the shop on Haravan ---------------------------------------------------------------
    def _post(self, path: str, body: dict | None = None, status: int = 201) -> dict:
        answer = self.http.post(f"{self.haravan_url}{path}", json=body or {}, headers=self.auth)
        assert answer.status_code == status, answer.text
        return answer.json()

    def create_customer(self, **fields) -> dict:
        return self._post("/com/customers.json", {"customer": fields})["customer"]

    def create_order(self, **fields) -> dict:
        return self._post("/com/orders.json", {"order": fields})["order"]

    def order(self, order_id: int) -> dict:
        answer = self.http.get(f"{self.haravan_url}/com/orders/{order_id}.json", headers=self.auth)
        assert answer.status_code == 200, answer.text
        return answer.json()["order"]

    def pay(self, order_id: int, gateway: str | None = None) -> dict:
        answer = self.http.post(f"{self.haravan_url}/_sandbox/orders/{order_id}/pay",
                                json={"gateway": gateway} if gateway else {})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def fulfill(self, order_id: int, location_id: int | None = None) -> dict:
        answer = self.http.post(f"{self.haravan_url}/_sandbox/orders/{order_id}/fulfill",
                                json={"location_id": location_id} if location_id else {})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def cancel(self, order_id: int, **body) -> dict:
        return self._post(f"/com/orders/{order_id}/cancel.json", body, status=200)["order"]

    def refund(self, order_id: int, **refund) -> dict:
        return self._post(f"/com/orders/{order_id}/refunds.json", {"refund": refund})["refund"]

    # -- the integrator --------------------------------------------------------------------
    def copy_mappings(self, name: str = "mappings") -> Path:
        target = self.tmp / name
        shutil.copytree(MAPPINGS, target, ignore=shutil.ignore_patterns("__pycache__"))
        self.mappings = target
        return target

    def cli(self, *args: str) -> Any:
        result = CliRunner().invoke(main, list(args), env={**self.config, "HEXAFLOW_STATE": str(self.state)},
                                    catch_exceptions=False)
        for secret in ("MISA_ACCESS_CODE", "HARAVAN_TOKEN"):
            assert CREDENTIALS[secret] not in result.output
        return result

    def run(self, flow: str, expect_exit: int = 0) -> str:
        result = self.cli("run", str(self.mappings / f"{flow}.yaml"))
        if result.exit_code != expect_exit:      # say why the records failed
            dead = self.cli("dlq", "list").output
            raise AssertionError(f"{result.output}\n{dead}")
        return result.output

    def sync(self, *flows: str) -> str:
        """Run the flows in order (customers before orders; each run polls MISA at its end),
        then wait (bounded) until MISA has processed everything; return the combined output."""
        flows = flows or FLOWS
        out = "".join(self.run(f) for f in flows)
        self.wait_settled()
        return out

    def snapshot(self) -> tuple[list, list]:
        reqs = sorted(self.request_list(), key=lambda r: r["org_refid"])
        d = self.dictionary()
        return reqs, sorted(d["account_objects"], key=lambda a: a["account_object_code"])
