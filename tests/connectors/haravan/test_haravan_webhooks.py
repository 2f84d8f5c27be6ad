"""Webhook signatures, and signed deliveries from the sandbox to a registered receiver."""
from __future__ import annotations

import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hexaflow.connectors.haravan import parse_webhook, sign, verify_webhook

SECRET = "whsec-test"
BODY = '{"id": 1300000000001, "financial_status": "partiallypaid", "total_price": 880000.0}'.encode()


@pytest.mark.parametrize("header", ["X-Haravan-Hmacsha256", "X-Haravan-HmacSha256",
                                    "x-haravan-hmacsha256", "X-HARAVAN-HMACSHA256",
                                    "x-haravan-hmac-sha256"])
def test_valid_signature_is_accepted_in_every_spelling(header):
    assert verify_webhook(BODY, {header: sign(BODY, SECRET)}, SECRET)


def test_forged_missing_and_foreign_signatures_are_refused():
    assert not verify_webhook(BODY, {}, SECRET)
    assert not verify_webhook(BODY, {"X-Haravan-Hmacsha256": ""}, SECRET)
    assert not verify_webhook(BODY, {"X-Haravan-Hmacsha256": "Zm9yZ2Vk"}, SECRET)
    assert not verify_webhook(BODY, {"X-Haravan-Hmacsha256": sign(BODY, "another-secret")}, SECRET)
    assert not verify_webhook(BODY + b" ", {"X-Haravan-Hmacsha256": sign(BODY, SECRET)}, SECRET)
    assert not verify_webhook(BODY, {"X-Haravan-Hmacsha256": "ünïcode"}, SECRET)
    assert not verify_webhook(BODY, {"X-Haravan-Hmacsha256": sign(BODY, "")}, "")


def test_parse_returns_topic_shop_and_normalised_body():
    topic, org_id, body = parse_webhook(BODY, {"x-haravan-topic": "orders/updated",
                                               "X-Haravan-Org-Id": "42"})
    assert (topic, org_id) == ("orders/updated", "42")
    assert body["financial_status"] == "partially_paid" and body["id"] == 1300000000001


@pytest.fixture
def receiver():
    got: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            got.put((raw, dict(self.headers)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks", got
    server.shutdown()
    server.server_close()


def test_sandbox_delivers_signed_webhooks_on_changes(shop, receiver):
    url, got = receiver
    assert shop.admin("POST", "/webhooks", json={"url": url, "topics": [
        "customers/create", "orders/paid"]}).status_code == 201
    shop.api("POST", "/customers.json", json={"customer": {"first_name": "An", "email": "an@example.com"}})
    order_id = shop.state()["orders"][0]["id"]
    shop.admin("POST", f"/orders/{order_id}/pay", json={"gateway": "Bank transfer"})
    events = {}
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        raw, headers = got.get(timeout=max(0.01, deadline - time.monotonic()))
        assert verify_webhook(raw, headers, SECRET)
        assert not verify_webhook(raw, headers, "another-secret")
        event = parse_webhook(raw, headers)
        assert event.org_id
        events[event.topic] = event.body
    assert events["customers/create"]["email"] == "an@example.com"
    assert events["orders/paid"]["id"] == order_id and events["orders/paid"]["financial_status"] == "paid"
