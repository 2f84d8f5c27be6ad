"""What the message tests share: the CLI in-process, sandbox settings, the secrets.

Every test here triggers a message the way a user meets it (a bad flow file, a wrong
credential, a forged delivery...) and checks that the words name the file (with line:col) or
the record, and the fix. The table of all messages is docs/messages.md.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from hexaflow.cli import main

# Credentials of the sandboxes: values that must never appear in any message.
CREDENTIALS = {"HARAVAN_TOKEN": "msg-haravan-token-" + secrets.token_hex(4),
               "HARAVAN_WEBHOOK_SECRET": "msg-webhook-secret-" + secrets.token_hex(4),
               "MISA_APP_ID": "msg-misa-app-" + secrets.token_hex(4),
               "MISA_ACCESS_CODE": "msg-misa-access-" + secrets.token_hex(4),
               "MISA_ORG_COMPANY_CODE": "0312345678"}
LIMITED_TOKEN = "msg-limited-token-" + secrets.token_hex(4)
# Every setting a test may change; each run starts without any of them from the outside.
SETTINGS = ("HARAVAN_BASE_URL", "HARAVAN_TOKEN", "HARAVAN_WEBHOOK_SECRET", "HARAVAN_PAGE_SIZE",
            "HARAVAN_MAX_ATTEMPTS", "HARAVAN_RETRY_BASE_DELAY", "HARAVAN_TIMEOUT_SECONDS",
            "HARAVAN_OVERLAP_SECONDS", "MISA_BASE_URL", "MISA_APP_ID", "MISA_ACCESS_CODE",
            "MISA_ORG_COMPANY_CODE", "MISA_AUTH_STYLE", "MISA_CLIENT_ID", "MISA_CALLBACK_KEY",
            "MISA_PAGE_SIZE", "HEXAFLOW_TENANT", "HEXAFLOW_SETTLE_SECONDS", "HEXAFLOW_BATCH_DELAY",
            "HEXAFLOW_READ_AHEAD")


def hexaflow(cwd: Path, *args: str, env: dict | None = None) -> Result:
    """``hexaflow ARGS`` in ``cwd``, with a state file there and nothing from the outside
    environment (a value None unsets a variable)."""
    environment: dict[str, str | None] = {name: None for name in SETTINGS}
    environment.update({"HEXAFLOW_STATE": str(cwd / "state.db"),
                        "HEXAFLOW_FILE_OUT": str(cwd / "out"), "HEXAFLOW_SETTLE_SECONDS": "0"})
    environment.update(env or {})
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=True)
    finally:
        os.chdir(old)


@dataclass
class Sandboxes:
    haravan: str          # URL of a shop with demo data
    misa: str             # URL of a company with demo data
    limited: str          # URL of a shop whose token (LIMITED_TOKEN) may only read the shop

    def env(self, **overrides: str | None) -> dict[str, str | None]:
        """Settings that work, with ``overrides`` (None unsets a variable)."""
        env: dict[str, str | None] = {**CREDENTIALS, "HARAVAN_BASE_URL": self.haravan,
                                      "MISA_BASE_URL": self.misa,
                                      "HARAVAN_RETRY_BASE_DELAY": "0.01",
                                      "HARAVAN_MAX_ATTEMPTS": "2"}
        env.update(overrides)
        return env


def no_secret_in(text: str) -> None:
    for name, value in CREDENTIALS.items():
        if name != "MISA_ORG_COMPANY_CODE":       # a tax code, not a secret
            assert value not in text, f"{name} leaked into: {text}"
    assert LIMITED_TOKEN not in text
