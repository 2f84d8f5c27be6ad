"""Secret-leak test (issue 6): run every flow (for real, ``--dry-run``, with forced failures:
a wrong Haravan token, a wrong MISA access code, a Haravan that answers 500, records that cannot
be mapped), then ``status``, ``trace``, ``dlq list`` / ``show``, with recognisable secret values
and Python logging at DEBUG (to a file and stderr), and search everything written: every
stdout/stderr, the log file, the bytes of the SQLite state (and its -wal/-shm), every file
under tmp_path. No secret value may appear anywhere.

Secrets: ``HARAVAN_TOKEN``, ``HARAVAN_WEBHOOK_SECRET``, ``MISA_ACCESS_CODE`` and the wrong values
of the forced failures. ``MISA_APP_ID`` is not a secret per the MISA reference (it is the
partner application's id, sent in every request body); it is not searched for as a leak, but
the test prints where it appears.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reliability_kit import MAPPINGS, Sandboxes

SECRETS = {"HARAVAN_TOKEN": "hx-secret-token-7f3a",
           "HARAVAN_WEBHOOK_SECRET": "hx-secret-webhook-c4e2",
           "MISA_APP_ID": "hx-app-id-not-secret-5d10",
           "MISA_ACCESS_CODE": "hx-secret-access-91bd",
           "MISA_ORG_COMPANY_CODE": "0312345678"}
WRONG = {"HARAVAN_TOKEN": "hx-secret-wrong-token-55aa", "MISA_ACCESS_CODE": "hx-secret-wrong-access-66bb"}
LEAKS = [SECRETS["HARAVAN_TOKEN"], SECRETS["HARAVAN_WEBHOOK_SECRET"], SECRETS["MISA_ACCESS_CODE"],
         *WRONG.values()]
FLOWS = ("customers", "products", "inventory", "orders")
# The CLI with the root logger at DEBUG, to stderr and to a file.
DEBUG_CLI = ("import logging, sys; "
             "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
             "h = logging.FileHandler(sys.argv.pop(1)); h.setLevel(logging.DEBUG); "
             "h.setFormatter(logging.Formatter('%(levelname)s %(name)s %(message)s')); "
             "logging.getLogger().addHandler(h); "
             "from hexaflow.cli import main; sys.argv[0] = 'hexaflow'; main()")


@pytest.fixture(scope="module")
def secret_sandboxes(tmp_path_factory):
    boxes = Sandboxes(tmp_path_factory.mktemp("secret_sandbox"), credentials=SECRETS)
    yield boxes
    boxes.close()


def test_no_secret_in_anything_written(secret_sandboxes: Sandboxes, tmp_path: Path):
    boxes = secret_sandboxes
    boxes.reset(60)
    outputs: list[tuple[str, str]] = [("hexaflow sandbox", "".join(boxes.output))]
    log = tmp_path / "debug.log"
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    state = tmp_path / "state.db"
    env = boxes.env(state, HEXAFLOW_FILE_OUT=str(tmp_path / "out"), HARAVAN_MAX_ATTEMPTS="2",
                    HARAVAN_RETRY_BASE_DELAY="0.05")

    def cli(*args: str, state_file: Path = state, **overrides: str) -> subprocess.CompletedProcess:
        run_env = dict(env, HEXAFLOW_STATE=str(state_file), **overrides)
        done = subprocess.run([sys.executable, "-c", DEBUG_CLI, str(log), *args], env=run_env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        outputs.append((" ".join(args), done.stdout + done.stderr))
        return done

    # Dry runs on a fresh state: every payload printed.
    for flow in FLOWS:
        done = cli("run", "--dry-run", f"{flow}.yaml", state_file=tmp_path / "dry.db")
        assert done.returncode == 0, done.stderr[-1500:]
    # Forced failures: wrong credentials, a failing Haravan.
    done = cli("run", "customers.yaml", state_file=tmp_path / "fail.db", HARAVAN_TOKEN=WRONG["HARAVAN_TOKEN"])
    assert done.returncode != 0
    done = cli("run", "customers.yaml", state_file=tmp_path / "fail.db",
               MISA_ACCESS_CODE=WRONG["MISA_ACCESS_CODE"])
    assert done.returncode != 0
    done = cli("run", "products.yaml", state_file=tmp_path / "fail.db",
               MISA_ACCESS_CODE=WRONG["MISA_ACCESS_CODE"])
    assert done.returncode != 0
    boxes.faults("haravan", error_rate=1.0, kinds=["500"], rate_limit=False)
    done = cli("run", "orders.yaml", state_file=tmp_path / "fail.db")
    assert done.returncode != 0
    boxes.faults("haravan", rate_limit=False)
    # Real runs; the orders flow with a warehouse row missing, so records are dead-lettered.
    table = tmp_path / "mappings" / "warehouses.yaml"
    good = table.read_text(encoding="utf-8")
    table.write_text("\n".join(l for l in good.splitlines() if "963416" not in l) + "\n",
                     encoding="utf-8")
    for flow in FLOWS:
        done = cli("run", f"{flow}.yaml")
        assert done.returncode in (0, 2), done.stderr[-1500:]
    # The table fixed; another orders run, then the reports.
    table.write_text(good, encoding="utf-8")
    boxes.drain()
    assert cli("run", "orders.yaml").returncode in (0, 2)
    assert cli("status").returncode == 0
    listing = cli("dlq", "list")
    assert listing.returncode == 0
    letters = re.findall(r"#(\d+)", listing.stdout)
    assert letters, listing.stdout
    for letter in letters[:3]:
        assert cli("dlq", "show", letter).returncode == 0
    order_id = re.search(r"record (\d+)", listing.stdout).group(1)
    assert cli("trace", order_id).returncode == 0
    requests = boxes.requests()
    assert requests
    assert cli("trace", requests[0]["refno_finance"]).returncode == 0
    assert cli("dlq", "replay", "orders.yaml").returncode in (0, 2)

    # Search everything.
    found = []
    for name, text in outputs:
        for secret in LEAKS:
            if secret in text:
                found.append((f"output of `{name}`", secret))
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for secret in LEAKS:
            if secret.encode() in data:
                found.append((str(path.relative_to(tmp_path)), secret))
    app_id = [name for name, text in outputs if SECRETS["MISA_APP_ID"] in text] + \
        [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
         if p.is_file() and SECRETS["MISA_APP_ID"].encode() in p.read_bytes()]
    searched = len(outputs), sum(1 for p in tmp_path.rglob("*") if p.is_file())
    print(f"\nsecrets: searched {searched[0]} command outputs and {searched[1]} files "
          f"({log.stat().st_size} bytes of DEBUG log); MISA_APP_ID appears in {app_id or 'nothing'}")
    logged = log.read_text(encoding="utf-8")
    assert "DEBUG httpcore" in logged and "WARNING hexaflow" in logged, logged[:500]
    assert not found, f"secrets leaked: {found}"
