"""Verifying and reading Haravan webhook deliveries.

Haravan signs each delivery with base64(HMAC-SHA256(secret, raw body)) in ``X-Haravan-Hmacsha256``
(the docs also write ``X-Haravan-HmacSha256``; Haravan's own validator reads
``x-haravan-hmac-sha256``), so every spelling is accepted. The signature must be checked over the
bytes as received, before any JSON parsing re-serialises them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Mapping, NamedTuple

from hexaflow.connector import MAX_DELIVERY_DEPTH

from .normalise import loads, normalise

SIGNATURE_HEADERS = ("x-haravan-hmacsha256", "x-haravan-hmac-sha256")


def sign(raw_body: bytes, secret: str) -> str:
    """The signature Haravan sends for ``raw_body`` (used by the sandbox and by tests)."""
    digest = hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for key, value in headers.items():
        if key.lower() in names:
            return value
    return None


def verify_webhook(raw_body: bytes, headers: Mapping[str, str], secret: str) -> bool:
    """True only when the delivery carries a signature made with ``secret`` over ``raw_body``."""
    if not secret:
        return False
    received = _header(headers, SIGNATURE_HEADERS)
    if not received:
        return False
    expected = sign(raw_body, secret)
    return hmac.compare_digest(expected.encode("ascii"), received.strip().encode("ascii", "replace"))


class WebhookEvent(NamedTuple):
    """Unpacks as ``topic, org_id, body``."""
    topic: str            # e.g. "orders/updated"
    org_id: str | None    # the shop (X-Haravan-Org-Id)
    body: Any             # the bare resource, normalised like a read record


def parse_webhook(raw_body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
    """Topic, shop and normalised body of a delivery. Verify it first with :func:`verify_webhook`.
    ValueError when the body is not JSON; JSONTooDeep when it nests too deeply to normalise."""
    topic = _header(headers, ("x-haravan-topic",)) or ""
    org_id = _header(headers, ("x-haravan-org-id",))
    body = normalise(loads(raw_body, MAX_DELIVERY_DEPTH)) if raw_body else None
    return WebhookEvent(topic=topic, org_id=org_id, body=body)
