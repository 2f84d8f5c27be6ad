"""The serve tests' fixture; the helpers live in serve_kit.py (a module name of its own, so
that test folders never import each other's conftest)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hexaflow.connectors.commands import start_sandboxes
from serve_kit import CREDENTIALS, Shop


@pytest.fixture
def shop(tmp_path: Path):
    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    config = {**creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url}
    s = Shop(haravan.url, misa.url, config, tmp_path / "state.db")
    s.seed_items()
    try:
        yield s
    finally:
        if s.server is not None:
            s.server.stop(timeout=30)
        s.http.close()
        haravan.stop()
        misa.stop()
