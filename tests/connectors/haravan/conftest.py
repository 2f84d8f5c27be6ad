"""Fixtures: a real Haravan sandbox on loopback and a connector pointed at it."""
from __future__ import annotations

import secrets

import httpx
import pytest

from hexaflow.connector import ConnectorContext
from hexaflow.connectors.haravan import HaravanConnector
from hexaflow.connectors.haravan.sandbox import HaravanSandbox
from hexaflow.connectors.sandbox_server import SandboxServer


class Shop:
    """A running sandbox plus helpers to reach it like a test author would."""

    def __init__(self, app: HaravanSandbox, server: SandboxServer):
        self.app = app
        self.server = server
        self.url = server.url
        self.token = app.token
        self.http = httpx.Client(base_url=server.url, timeout=10,
                                 headers={"Authorization": f"Bearer {app.token}"})

    def connector(self, **config: str) -> HaravanConnector:
        # A fresh token per shop keeps rate-limit buckets (shared per account) apart.
        # The sandbox's bucket starts empty; the default pessimistic start (assume full,
        # first call waits 0.25 s) is tested on its own in test_haravan_reliability.
        settings = {"HARAVAN_BASE_URL": self.url, "HARAVAN_TOKEN": self.token,
                    "HARAVAN_RETRY_BASE_DELAY": "0.02", "HARAVAN_TIMEOUT_SECONDS": "5",
                    "HARAVAN_BUCKET_AT_START": "empty"}
        settings.update(config)
        return HaravanConnector(ConnectorContext(config=settings))

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, "/com" + path, **kwargs)

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, "/_sandbox" + path, **kwargs)

    def state(self) -> dict:
        return self.admin("GET", "/state").json()


@pytest.fixture
def make_shop():
    started: list[Shop] = []

    def make(data: str = "demo", orders: int = 60, rate_limit: bool = False, **options) -> Shop:
        app = HaravanSandbox(token="sandbox-" + secrets.token_hex(8),
                             webhook_secret=options.pop("webhook_secret", "whsec-test"),
                             data=data, orders=orders, rate_limit=rate_limit, seed=1, **options)
        shop = Shop(app, SandboxServer(app).start())
        started.append(shop)
        return shop

    yield make
    for shop in started:
        shop.http.close()
        shop.server.stop()


@pytest.fixture
def shop(make_shop) -> Shop:
    return make_shop()


def _read_all(connector, resource, params=None, since=None):
    pages = list(connector.read(resource, params or {}, since=since))
    return pages, [r for p in pages for r in p.records]


@pytest.fixture
def read_all():
    """(pages, records) of one full read; a fixture, since test modules cannot import conftest."""
    return _read_all
