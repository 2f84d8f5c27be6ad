"""Haravan connector: reads customers, orders, products, locations and stock; writes products and
stock. See docs/connectors/haravan.md."""
from .connector import HaravanConnector
from .webhooks import WebhookEvent, parse_webhook, sign, verify_webhook

__all__ = ["HaravanConnector", "WebhookEvent", "parse_webhook", "sign", "verify_webhook"]
