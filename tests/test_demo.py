"""`hexaflow demo` runs on the embedded sandboxes with no credentials and says what it created."""
from __future__ import annotations

import re

from click.testing import CliRunner

from hexaflow.cli import main


def test_demo_runs_every_flow_and_prints_what_was_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("HARAVAN_TOKEN", "MISA_APP_ID", "MISA_ACCESS_CODE"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(main, ["demo", "--orders", "20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "customers: read" in result.stdout and ", 0 failed" in result.stdout
    assert re.search(r"documents now: \d+ accepted", result.stdout)
    assert "What is where now:" in result.stdout
    assert "demo-access-code" not in result.stdout
