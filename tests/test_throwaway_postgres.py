"""Where no PostgreSQL answers at HEXAFLOW_TEST_POSTGRES, the state suites start a throwaway
cluster with Debian's binaries, run on it, and stop it at exit (tests/state_backends.py)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from state_backends import debian_initdb

ROOT = Path(__file__).resolve().parents[1]
SMALL_POSTGRES_TEST = ("tests/engine/test_state_locks.py::"
                       "test_one_holder_at_a_time_and_a_higher_number_each_time[postgresql]")


def _postmasters_under(folder: Path) -> list[str]:
    """Command lines of running processes that name ``folder`` (the cluster's data dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline and "postgres" in cmdline:
            found.append(cmdline)
    return found


def test_a_closed_port_starts_a_throwaway_cluster_that_runs_the_test_and_is_gone_at_exit():
    if debian_initdb() is None:
        pytest.skip("no Debian PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb): "
                    "apt-get install postgresql")
    # A folder the server's own user can reach when the tests run as root (pytest's tmp_path
    # is root's alone): the cluster is made in it through TMPDIR.
    temp = Path(tempfile.mkdtemp(prefix="hexaflow-throwaway-test-", dir="/tmp"))
    temp.chmod(0o755)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))           # bound, never listening: connections are refused
    try:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env.update(TMPDIR=str(temp), HEXAFLOW_TEST_POSTGRES=(
            f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/test"))
        done = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-rs",
                               "-s", "-p", "no:cacheprovider", SMALL_POSTGRES_TEST],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0 and "1 passed" in done.stdout and "skipped" not in done.stdout, \
            done.stdout[-3000:] + done.stderr[-2000:]
        assert f"data in {temp}/hexaflow-test-pg-" in done.stderr, done.stderr[-2000:]
        assert not list(temp.glob("hexaflow-test-pg-*")), "the cluster's folder outlived the run"
        assert not _postmasters_under(temp), "the cluster outlived the run"
    finally:
        closed.close()
        shutil.rmtree(temp, ignore_errors=True)
