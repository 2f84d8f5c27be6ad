"""The sandboxes the end-to-end flow tests share: both in-process on loopback, started once per
module with ``data="empty"``, and reset before each test that takes a ``world``."""
from __future__ import annotations

import httpx
import pytest

from hexaflow.connectors.commands import start_sandboxes

from e2e_world import CREDENTIALS, TIMEOUT, World


@pytest.fixture(scope="module")
def sandboxes():
    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    try:
        # The sandbox's bucket is off; keep the client's own 4 calls/s pacing from slowing the
        # many short runs of a module (a documented setting of the Haravan connector).
        yield haravan, misa, {**creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url,
                              "HARAVAN_CALLS_PER_SECOND": "1000"}
    finally:
        haravan.stop()
        misa.stop()


@pytest.fixture
def world(sandboxes, tmp_path):
    """A fresh shop and company with the items seeded, and a fresh state store."""
    haravan, misa, config = sandboxes
    with httpx.Client(timeout=TIMEOUT) as http:
        assert http.post(f"{haravan.url}/_sandbox/reset", json={}).status_code == 200
        assert http.post(f"{misa.url}/_sandbox/reset", json={"data": "empty"}).status_code == 200
    w = World(haravan.url, misa.url, config, tmp_path)
    w.seed_items()
    yield w
    w.http.close()
