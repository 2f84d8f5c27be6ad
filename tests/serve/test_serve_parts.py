"""The pieces of ``hexaflow serve`` on their own: the inbox, the connectors' ``receive`` hooks,
and the command's start-up and clean stop on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from hexaflow.connector import ConnectorContext
from hexaflow.connectors.haravan import HaravanConnector
from hexaflow.connectors.haravan.webhooks import sign
from hexaflow.connectors.misa import MisaConnector
from hexaflow.connectors.misa.callbacks import SAVE_PROCESSED, build_callback
from hexaflow.state import open_store

from serve_kit import CREDENTIALS, MAPPINGS

CONFIG = {**CREDENTIALS, "HARAVAN_BASE_URL": "http://127.0.0.1:9", "MISA_BASE_URL": "http://127.0.0.1:9"}


def test_the_inbox_stores_an_event_once_even_when_delivered_concurrently(tmp_path: Path):
    path = str(tmp_path / "state.db")
    results: list[bool] = []

    def put() -> None:
        store = open_store(path)
        try:
            results.append(store.put_inbox("t1", "shop", "orders", "42", "2026-11-27T10:00:00Z"))
        finally:
            store.close()

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False] * 7 + [True]
    store = open_store(path)
    assert store.put_inbox("t1", "shop", "orders", "42", "2026-11-27T10:05:00Z")   # a new version
    assert store.put_inbox("t2", "shop", "orders", "42", "2026-11-27T10:00:00Z")   # another tenant
    assert store.put_inbox("t1", "shop", "orders", "43", None)
    assert not store.put_inbox("t1", "shop", "orders", "43", None)
    assert len(store.inbox("t1", pending=True)) == 3
    assert store.mark_inbox_handled("t1", "shop", "orders", float("inf")) == 3
    assert store.inbox("t1", pending=True) == [] and len(store.inbox("t2", pending=True)) == 1


def haravan_delivery(body: dict, topic: str, secret: str = CREDENTIALS["HARAVAN_WEBHOOK_SECRET"]):
    raw = json.dumps(body).encode()
    return raw, {"x-haravan-topic": topic, "x-haravan-hmacsha256": sign(raw, secret)}


def test_haravan_receive_maps_topics_to_the_changed_record():
    connector = HaravanConnector(ConnectorContext(config=CONFIG))
    order = {"id": 7, "updated_at": "2026-11-27T10:00:00.123Z"}
    got = connector.receive(*haravan_delivery(order, "orders/paid"))
    assert got.status == 200 and [(e.resource, e.record_id) for e in got.events] == [("orders", "7")]
    assert got.events[0].version
    refund = connector.receive(*haravan_delivery({"id": 99, "order_id": 7, "created_at": "x"},
                                                 "refunds/create"))
    assert [(e.resource, e.record_id) for e in refund.events] == [("orders", "7")]
    customer = connector.receive(*haravan_delivery({"id": 5, "updated_at": "x"}, "customers/update"))
    assert [e.resource for e in customer.events] == ["customers"]
    product = connector.receive(*haravan_delivery({"id": 6, "updated_at": "x"}, "products/create"))
    assert [e.resource for e in product.events] == ["products"]
    other = connector.receive(*haravan_delivery({"id": 1}, "app/uninstalled"))
    assert other.status == 200 and other.events == []
    forged = connector.receive(*haravan_delivery(order, "orders/paid", secret="guess"))
    assert forged.refused and forged.status == 401 and forged.events == []


def test_haravan_refuses_every_webhook_when_no_secret_is_configured():
    config = {k: v for k, v in CONFIG.items() if k != "HARAVAN_WEBHOOK_SECRET"}
    saved = os.environ.pop("HARAVAN_WEBHOOK_SECRET", None)
    try:
        connector = HaravanConnector(ConnectorContext(config=config))
        assert connector.receive(*haravan_delivery({"id": 7}, "orders/paid")).status == 401
    finally:
        if saved is not None:
            os.environ["HARAVAN_WEBHOOK_SECRET"] = saved


def test_misa_receive_answers_in_misas_shape():
    connector = MisaConnector(ConnectorContext(config=CONFIG))
    data = [{"org_refid": "r1", "success": True},
            {"org_refid": "r2", "success": False, "error_code": "InvalidParam", "error_message": "Sai"}]
    body = build_callback(SAVE_PROCESSED, data, app_id=CREDENTIALS["MISA_APP_ID"],
                          org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"],
                          key=CREDENTIALS["MISA_APP_ID"])
    got = connector.receive(json.dumps(body).encode(), {})
    assert got.status == 200 and got.body == {"Success": True}
    assert [(r.target_ref, r.status, r.message) for r in got.results] == [
        ("r1", "accepted", None), ("r2", "rejected", "Sai")]
    forged = connector.receive(json.dumps(dict(body, signature="00" * 32)).encode(), {})
    assert forged.status == 401 and forged.results == [] and forged.body["Success"] is False


def test_serve_command_prints_its_urls_and_stops_cleanly_on_sigterm(tmp_path: Path):
    env = {**os.environ, **CONFIG, "HEXAFLOW_STATE": str(tmp_path / "state.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hexaflow.cli", "serve", str(MAPPINGS / "orders.yaml"),
         "--port", "0", "--interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any(line.strip().startswith("GET") for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        text = "".join(lines)
        assert "/hooks/haravan" in text and "/hooks/misa" in text
        health_url = next(line.split()[1] for line in lines if line.strip().startswith("GET"))
        assert httpx.get(health_url, timeout=5).json()["ok"] is True
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out
    for secret in ("HARAVAN_TOKEN", "HARAVAN_WEBHOOK_SECRET", "MISA_ACCESS_CODE"):
        assert CREDENTIALS[secret] not in text + out + err
