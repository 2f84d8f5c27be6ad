"""A state file that is damaged, or that the user running hexaflow cannot write: every command
using it (run, status, trace, dlq, serve) says so in one error line that names the file, what is
wrong and what to do, and exits 1, whether SQLite notices when the file is opened or mid-command.

Damaged files are real state files with their later pages overwritten. A read-only file is one
the user cannot write; root writes any file whatever its mode, so as root those commands run as
the user nobody (setpriv), and without setpriv they skip, saying why.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from messages_kit import hexaflow

FLOW = """\
flow: orders
source:
  connector: file
  resource: records
  params: {path: orders.jsonl}
  as: order
routes:
  - name: sales_order
    target: {connector: file, document: records}
    key: "DH_<<order.code>>"
    fields:
      phone: "=must(order.phone, 'order has no phone: add one in Haravan')"
"""
RECORDS = 600                  # every third has no phone: a dead letter
TIMEOUT = 60                   # a command that does not stop fails the test, it does not hang it
DAMAGED = "the state file is damaged ("   # then SQLite's words, or quick_check's
READ_ONLY = "cannot write the state file (attempt to write a readonly database)"


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """A folder with the flow, its records and the state file of one run of it."""
    folder = tmp_path_factory.mktemp("state_history")
    (folder / "flow.yaml").write_text(FLOW, encoding="utf-8")
    records = [{"id": n, "code": f"C{n}", **({} if n % 3 == 0 else {"phone": "0909"})}
               for n in range(1, RECORDS + 1)]
    (folder / "orders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records),
                                         encoding="utf-8")
    result = hexaflow(folder, "run", "flow.yaml")
    assert result.exit_code == 2 and "read 600 records, 200 failed" in result.output, result.output
    assert not Path(str(folder / "state.db") + "-wal").exists()     # all of it in the file
    return folder


def _copy(history: Path, folder: Path) -> Path:
    for name in ("flow.yaml", "orders.jsonl", "state.db"):
        shutil.copy(history / name, folder / name)
    (folder / "record.json").write_text('{"id": 3, "code": "C3", "phone": "0909"}')
    (folder / "out").mkdir(exist_ok=True)
    return folder / "state.db"


def _damage(state: Path) -> None:
    """Overwrite every page after the first (which holds the schema) but for its first bytes:
    the file opens, and the first query of any table reads a damaged page."""
    data = bytearray(state.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    assert len(data) >= 20 * size, "the state file is too small to damage mid-file"
    for start in range(size, len(data), size):
        data[start + 16:start + size] = b"\xff" * (size - 16)
    state.write_bytes(bytes(data))


def _cli(folder: Path, *args: str, user: list[str] | None = None) -> subprocess.CompletedProcess:
    """``hexaflow ARGS`` in a process of its own (as another user when ``user`` is given),
    bounded in time."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
           "PYTHONDONTWRITEBYTECODE": "1", "HEXAFLOW_STATE": str(folder / "state.db"),
           "HEXAFLOW_FILE_OUT": str(folder / "out"), "HEXAFLOW_SETTLE_SECONDS": "0"}
    return subprocess.run([*(user or []), sys.executable, "-m", "hexaflow.cli", *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _says_damaged(output: str, state: Path) -> None:
    assert f"error: HEXAFLOW_STATE={state}: {DAMAGED}" in output, output
    assert f"restore {state} from your latest backup" in output, output
    assert "Traceback" not in output and "sqlite3." not in output, output


# -- a damaged file ------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("run", "flow.yaml"), ("status",), ("trace", "3"), ("dlq", "list"), ("dlq", "show", "1"),
    ("dlq", "drop", "1"), ("dlq", "replay", "flow.yaml"),
    ("explain", "flow.yaml", "--record", "record.json"),
], ids=lambda args: "-".join(args).replace(".yaml", ""))
def test_a_damaged_state_file_is_an_error_line_naming_it_and_the_backup(history, tmp_path, args):
    state = _copy(history, tmp_path)
    _damage(state)
    result = hexaflow(tmp_path, *args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    _says_damaged(result.stderr, state)


def test_serve_with_a_damaged_state_file_does_not_start(history, tmp_path):
    state = _copy(history, tmp_path)
    _damage(state)
    result = _cli(tmp_path, "serve", "flow.yaml", "--port", "0", "--interval", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    _says_damaged(result.stderr, state)
    assert "listening" not in result.stdout


def test_the_status_page_on_a_damaged_state_file_says_so_not_500(history, tmp_path):
    from hexaflow.statuspage import StatusPage
    state = _copy(history, tmp_path)
    _damage(state)
    token = "status-admin-token-5b7c1e09d4"
    page = StatusPage(config={"HEXAFLOW_ADMIN_TOKEN": token, "HEXAFLOW_UI_LANGUAGE": "en"},
                      state=str(state), tenants={"default": {}})
    for path in ("/status", "/status/problems", "/status/record/3", "/status/search?q=C3"):
        answer = page.handle("GET", path, {"Authorization": f"Bearer {token}"})
        assert answer.status == 503, (path, answer.status)
        body = answer.body.decode()
        assert "The state file cannot be read" in body and DAMAGED in body, body
        assert "restore" in body and "Traceback" not in body


# -- a file or folder the user cannot write --------------------------------------------------------
@pytest.fixture
def other_user() -> list[str]:
    """The prefix that runs a command as a user for whom a mode without w is read-only."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("the tests run as root, who writes read-only files, and setpriv (util-linux) "
                    "is not installed to run hexaflow as the user nobody")
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    if subprocess.run([*prefix, sys.executable, "-c", "import hexaflow"], timeout=TIMEOUT,
                      capture_output=True).returncode != 0:
        pytest.skip("setpriv cannot run hexaflow as the user nobody here (is the virtualenv "
                    "readable by other users?)")
    return prefix


@pytest.fixture
def shared_folder():
    """A folder that other users can reach (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="hexaflow-state-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def _read_only(history: Path, folder: Path, what: str) -> Path:
    """The state file read-only (in a folder the user can write), or the folder read-only."""
    state = _copy(history, folder)
    (folder / "out").chmod(0o777)
    if what == "file":
        state.chmod(0o444)
        folder.chmod(0o777)
    else:
        state.chmod(0o666)
        folder.chmod(0o555)
    return state


@pytest.mark.parametrize("what, args", [
    ("file", ("run", "flow.yaml")),
    ("folder", ("run", "flow.yaml")),
    ("file", ("dlq", "drop", "1")),
    ("file", ("serve", "flow.yaml", "--port", "0", "--interval", "0")),
], ids=["run-file", "run-folder", "dlq-drop-file", "serve-file"])
def test_a_state_file_the_user_cannot_write_is_an_error_line_saying_what_to_change(
        history, shared_folder, other_user, what, args):
    state = _read_only(history, shared_folder, what)
    result = _cli(shared_folder, *args, user=other_user)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"error: HEXAFLOW_STATE={state}: {READ_ONLY}" in result.stderr, output
    assert (f"let the user running hexaflow write to {state} and to its folder "
            f"{shared_folder.resolve()} (SQLite writes state.db-wal and state.db-shm there)") in output
    assert "Traceback" not in output and "listening" not in output, output
    assert not any((shared_folder / "out").iterdir())              # nothing was sent


def test_a_read_only_state_file_can_still_be_read(history, shared_folder, other_user):
    _read_only(history, shared_folder, "file")
    result = _cli(shared_folder, "status", user=other_user)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "400 done" in result.stdout and "200 open" in result.stdout, result.stdout
