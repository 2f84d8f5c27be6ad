"""Fixtures of the message tests: real Haravan and MISA sandboxes on loopback (see
messages_kit.py for the rest). The table of all messages is docs/messages.md."""
from __future__ import annotations

import pytest

from messages_kit import CREDENTIALS, LIMITED_TOKEN, Sandboxes


@pytest.fixture(scope="session")
def sandboxes():
    from hexaflow.connectors.commands import start_sandboxes
    from hexaflow.connectors.haravan.sandbox import HaravanSandbox
    from hexaflow.connectors.sandbox_server import SandboxServer

    haravan, misa, _ = start_sandboxes(data="demo", orders=3, rate_limit=False,
                                       credentials=dict(CREDENTIALS))
    limited = SandboxServer(HaravanSandbox(token=LIMITED_TOKEN, webhook_secret="unused",
                                           data="demo", orders=3, rate_limit=False,
                                           scopes=["com.read_shop"])).start()
    try:
        yield Sandboxes(haravan.url, misa.url, limited.url)
    finally:
        limited.stop()
        haravan.stop()
        misa.stop()

