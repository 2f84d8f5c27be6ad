"""`hexaflow sandbox` serves the Haravan sandbox and prints its URL and token."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hexaflow_sandbox_prints_url_and_token():
    pytest.importorskip("hexaflow.connectors.misa.sandbox")
    exe = Path(sys.executable).with_name("hexaflow")
    hport, mport = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARAVAN_", "MISA_"))}
    proc = subprocess.Popen([str(exe), "sandbox", "--data", "demo", "--orders", "30",
                             "--haravan-port", str(hport), "--misa-port", str(mport)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines, deadline = [], time.monotonic() + 20
        while time.monotonic() < deadline and not any("HARAVAN_TOKEN=" in l for l in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        out = "".join(lines)
        assert f"http://127.0.0.1:{hport}" in out, out + proc.stderr.read() if proc.poll() is not None else out
        token = re.search(r"HARAVAN_TOKEN=(\S+)", out).group(1)
        r = httpx.get(f"http://127.0.0.1:{hport}/com/orders/count.json", params={"status": "any"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert r.json() == {"count": 30}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0
