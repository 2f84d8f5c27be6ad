"""Three shops through one ``hexaflow serve --tenants`` on PostgreSQL (issue 15, docs/tenants.md).

Each tenant has its own Haravan shop and MISA company (its own sandboxes and credentials), its
own warehouses and settings, and its secrets in a file outside its folder. Shop C's MISA is
down the whole time. Shops A and B get exactly their own documents in their own company, with
their own codes and warehouses, while C's runs fail and back off; C's deliveries are kept in
the inbox for when its MISA answers again.
"""
from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hexaflow.connectors.commands import start_sandboxes
from hexaflow.connectors.haravan.webhooks import sign
from hexaflow.scaffold import add_tenant
from hexaflow.serve import HookServer, served_tenants
from hexaflow.state import open_store
from serve_kit import ITEMS, TIMEOUT, wait_for
from state_backends import make_target

SALES_ORDER, SALES_VOUCHER = 20, 21


def _credentials(tag: str) -> dict[str, str]:
    return {"HARAVAN_TOKEN": f"token-{tag}-0123456789", "HARAVAN_WEBHOOK_SECRET": f"hook-{tag}-secret",
            "MISA_APP_ID": "partner-app", "MISA_ACCESS_CODE": f"access-{tag}-code",
            "MISA_ORG_COMPANY_CODE": f"03000000{ord(tag)}"}


class Company:
    """One tenant's world: its shop (Haravan sandbox), its company (MISA sandbox), its folder."""

    def __init__(self, base: Path, name: str, tag: str):
        self.name, self.creds = name, _credentials(tag)
        self.haravan, self.misa, _ = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                                     credentials=dict(self.creds))
        self.http = httpx.Client(timeout=TIMEOUT)
        self.folder = base / name
        add_tenant(base, name)
        secrets = base / ".secrets" / f"{name}.env"
        secrets.parent.mkdir(exist_ok=True)
        secrets.write_text("".join(f"{k}={self.creds[k]}\n" for k in
                                   ("HARAVAN_TOKEN", "HARAVAN_WEBHOOK_SECRET", "MISA_ACCESS_CODE")))
        secrets.chmod(0o600)
        (self.folder / "tenant.yaml").write_text(
            f"description: shop {tag}\n"
            f"environment:\n"
            f"  HARAVAN_BASE_URL: {self.haravan.url}\n"
            f"  MISA_BASE_URL: {self.misa.url}\n"
            f"  MISA_ORG_COMPANY_CODE: '{self.creds['MISA_ORG_COMPANY_CODE']}'\n"
            f"secrets: ../.secrets/{name}.env\n")
        items = [{"dictionary_type": 3, "inventory_item_code": sku, "inventory_item_name": title,
                  "inventory_item_type": 0, "unit_name": unit, "unit_price": price}
                 for sku, (title, unit, price) in ITEMS.items()]
        answer = self.http.post(f"{self.misa.url}/_sandbox/dictionary", json={"dictionary": items})
        assert answer.status_code == 200, answer.text

    def set_setting(self, old: str, new: str, file: str = "settings.yaml") -> None:
        path = self.folder / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def order(self, n: int) -> dict:
        auth = {"Authorization": f"Bearer {self.creds['HARAVAN_TOKEN']}"}
        customer = self.http.post(f"{self.haravan.url}/com/customers.json", headers=auth, json={
            "customer": {"first_name": f"Khách {n}", "last_name": self.name,
                         "email": f"k{n}@{self.name}.example", "phone": f"09091234{n:02d}"}})
        assert customer.status_code == 201, customer.text
        lines = [{"sku": "AO-THUN-M", "title": "Áo thun cotton", "price": 250000, "quantity": 1}]
        body = {"gateway": "Bank transfer", "customer": {"id": customer.json()["customer"]["id"]},
                "line_items": lines, "location_id": 963414}
        answer = self.http.post(f"{self.haravan.url}/com/orders.json", json={"order": body},
                                headers=auth)
        assert answer.status_code == 201, answer.text
        return answer.json()["order"]

    def deliver(self, server: HookServer, order: dict, secret: str | None = None,
                fresh: bool = False) -> httpx.Response:
        """Post the order as Haravan's signed webhook (``fresh``: on a connection of its own)."""
        raw = json.dumps(order, ensure_ascii=False).encode("utf-8")
        key = secret or self.creds["HARAVAN_WEBHOOK_SECRET"]
        headers = {"Content-Type": "application/json", "X-Haravan-Topic": "orders/create",
                   "X-Haravan-Org-Id": "1000", "X-Haravan-Hmacsha256": sign(raw, key)}
        url = server.hook_url("haravan", tenant=self.name)
        if fresh:
            return httpx.post(url, content=raw, headers=headers, timeout=30)
        return self.http.post(url, content=raw, headers=headers)

    def requests(self) -> list[dict]:
        return self.http.get(f"{self.misa.url}/_sandbox/requests").json()["requests"]

    def stop(self) -> None:
        self.http.close()
        self.haravan.stop()
        self.misa.stop()


@pytest.fixture
def companies(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HEXAFLOW_SETTLE_SECONDS", "0.5")
    monkeypatch.setenv("HEXAFLOW_BATCH_DELAY", "0.05")
    # The MISA partner app is the integrator's, one for every shop: set once for the process.
    monkeypatch.setenv("MISA_APP_ID", "partner-app")
    base = tmp_path / "tenants"
    base.mkdir()
    made = [Company(base, name, tag) for name, tag in (("shop-a", "A"), ("shop-b", "B"),
                                                          ("shop-c", "C"))]
    try:
        yield base, made
    finally:
        for company in made:
            company.stop()


def test_three_tenants_on_postgresql_each_in_its_own_company_with_one_misa_down(
        companies, tmp_path, request, monkeypatch):
    base, (a, b, c) = companies
    # Their own settings: B numbers its sales orders DHB_, names customers SHB-, and keeps the
    # stock of Haravan location 963414 in its Hà Nội warehouse.
    b.set_setting('sales_order: "DH_"', 'sales_order: "DHB_"')
    b.set_setting('customer_code_prefix: "HRV-"', 'customer_code_prefix: "SHB-"')
    b.set_setting("{stock_code: KHO_HCM, location_id: 963414", "{stock_code: KHO_HCM, location_id: 963499",
                  "warehouses.yaml")
    b.set_setting("{stock_code: KHO_HN, location_id: 963415", "{stock_code: KHO_HN, location_id: 963414",
                  "warehouses.yaml")
    c.misa.stop()                   # C's MISA is down the whole time
    # No tenant borrows a secret from the process environment.
    monkeypatch.setenv("HARAVAN_TOKEN", a.creds["HARAVAN_TOKEN"])
    state = make_target("postgresql", tmp_path, request)
    err = io.StringIO()
    served = served_tenants([], str(base), None, err)
    assert [t.name for t in served] == ["shop-a", "shop-b", "shop-c"], err.getvalue()
    assert all(t.problem is None for t in served), err.getvalue()
    assert served[2].config["HARAVAN_TOKEN"] == c.creds["HARAVAN_TOKEN"]
    server = HookServer(served, config={}, state=str(state), port=0).start()
    try:
        orders = {co.name: [co.order(n) for n in range(1, 4)] for co in (a, b, c)}
        # A delivery signed with another shop's secret is refused by this shop's receiver.
        forged = a.deliver(server, orders["shop-a"][0], secret=b.creds["HARAVAN_WEBHOOK_SECRET"])
        assert forged.status_code == 401
        for co in (c, a, b):        # C first: its failing runs must not hold A and B back
            for order in orders[co.name]:
                answer = co.deliver(server, order)
                assert answer.status_code == 200, answer.text

        def sales_orders(co: Company) -> dict[str, dict]:
            return {str(r["org_refno"]): r for r in co.requests() if r["voucher_type"] == SALES_ORDER}

        for co, prefix, stock in ((a, "DH_", "KHO_HCM"), (b, "DHB_", "KHO_HN")):
            wanted = {str(o["id"]) for o in orders[co.name]}
            got = wait_for(lambda co=co, wanted=wanted: (lambda s: s if set(s) >= wanted else None)(
                sales_orders(co)), f"{co.name}'s sales orders in its MISA company", timeout=60)
            assert set(got) == wanted            # its own orders, no other shop's
            for order_id, row in got.items():
                assert row["refno_finance"] == f"{prefix}{order_id}"
                payload = row["payload"]
                assert payload["org_refno"] == order_id
                details = payload.get("detail") or payload.get("details") or []
                assert details and {d["stock_code"] for d in details} == {stock}
        b_codes = {r["payload"].get("account_object_code") for r in b.requests()
                   if r["voucher_type"] == SALES_ORDER}
        assert b_codes and all(str(code).startswith("SHB-") for code in b_codes), b_codes
        a_codes = {r["payload"].get("account_object_code") for r in a.requests()
                   if r["voucher_type"] == SALES_ORDER}
        assert a_codes and all(str(code).startswith("HRV-") for code in a_codes), a_codes
        # C: every delivery kept for later, its runs failed and back off; nothing in its ledger.
        wait_for(lambda: server.dispatcher.run_counts().get(("shop-c", "orders", "failed")),
                 "a failed run of shop-c's orders", timeout=30)
        store = open_store(str(state))
        try:
            inbox_c = [r for r in store.inbox("shop-c") if r["resource"] == "orders"]
            assert {r["record_id"] for r in inbox_c} == {str(o["id"]) for o in orders["shop-c"]}
            assert not any(r["handled_at"] for r in inbox_c)
            assert [e for e in store.entries("shop-c") if e.state not in ("planned",)] == []
            for name in ("shop-a", "shop-b"):
                flows = {e.flow for e in store.entries(name)}
                assert "orders" in flows
                ids = {e.source_id for e in store.entries(name, "orders")}
                assert ids == {str(o["id"]) for o in orders[name]}
        finally:
            store.close()
        health = server.health()["tenants"]
        assert set(health) == {"shop-a", "shop-b", "shop-c"}
    finally:
        server.stop(timeout=30)


DELIVERIES = 200


def test_200_concurrent_deliveries_to_two_tenants_are_all_taken_and_each_order_sent_once(
        companies, tmp_path, request):
    base, (a, b, c) = companies
    import shutil
    shutil.rmtree(c.folder)              # two tenants here
    state = make_target("postgresql", tmp_path, request)
    server = HookServer(served_tenants([], str(base), None, io.StringIO()), config={},
                        state=str(state), port=0).start()
    try:
        orders = [(co, co.order(n)) for n in range(DELIVERIES // 2) for co in (a, b)]
        start = threading.Barrier(DELIVERIES, timeout=30)

        def deliver(item: tuple[Company, dict]) -> tuple[int | str, float]:
            co, order = item
            start.wait()                       # all at once, each on its own connection
            began = time.perf_counter()
            try:
                return co.deliver(server, order, fresh=True).status_code, time.perf_counter() - began
            except httpx.TransportError as exc:
                return type(exc).__name__, time.perf_counter() - began

        with ThreadPoolExecutor(DELIVERIES) as pool:
            results = list(pool.map(deliver, orders))
        statuses = [status for status, _ in results]
        assert statuses == [200] * DELIVERIES, {s: statuses.count(s) for s in set(statuses)}
        latencies = sorted(seconds for _, seconds in results)
        print(f"\n{DELIVERIES} concurrent deliveries to 2 tenants: p50 "
              f"{latencies[len(latencies) // 2] * 1000:.0f} ms, p95 "
              f"{latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms")
        for co in (a, b):
            ids = {str(o["id"]) for owner, o in orders if owner is co}

            def sales(co: Company = co) -> list[str]:
                return [str(r["org_refno"]) for r in co.requests() if r["voucher_type"] == SALES_ORDER]
            wait_for(lambda ids=ids, sales=sales: ids <= set(sales()),
                     f"a sales order in {co.name}'s MISA for each of its orders", timeout=120)
            assert sorted(sales()) == sorted(ids)          # each once, and no other shop's
        assert server.dispatcher.wait_idle(60)
    finally:
        server.stop(timeout=30)


def test_serve_with_the_queue_puts_each_webhook_job_in_its_transaction_and_a_worker_runs_it(
        companies, tmp_path, request):
    import os
    import shutil
    import signal
    import subprocess
    import sys

    import psycopg
    base, (a, b, c) = companies
    for co in (b, c):
        shutil.rmtree(co.folder)
    state = str(make_target("postgresql", tmp_path, request))
    server = HookServer(served_tenants([], str(base), None, io.StringIO()), config={},
                        state=state, port=0, dispatch="queue").start()
    worker = None
    try:
        orders = [a.order(n) for n in range(1, 4)]
        for order in orders:
            answer = a.deliver(server, order)
            assert answer.status_code == 200, answer.text
        with psycopg.connect(state) as conn:
            jobs = conn.execute("SELECT lock, queueing_lock, priority, status FROM "
                                "procrastinate_jobs WHERE task_name='hexaflow.run_flow'").fetchall()
        # Three deliveries, one waiting job: the queueing lock keeps one per (tenant, flow).
        assert jobs == [("shop-a:orders", "shop-a:orders", 10, "todo")], jobs
        store = open_store(state)
        try:
            assert {r["record_id"] for r in store.inbox("shop-a") if r["resource"] == "orders"} == \
                {str(o["id"]) for o in orders}
        finally:
            store.close()
        env = {**os.environ, "HEXAFLOW_STATE": state}
        worker = subprocess.Popen([sys.executable, "-m", "hexaflow.cli", "worker", "--tenants",
                                   str(base), "--interval", "0"], env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w"))
        wanted = {str(o["id"]) for o in orders}
        wait_for(lambda: wanted <= {str(r["org_refno"]) for r in a.requests()
                                    if r["voucher_type"] == SALES_ORDER},
                 "the worker's sales orders in shop-a's MISA", timeout=90)
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
        server.stop(timeout=30)
