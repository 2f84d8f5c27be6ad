"""Shared machinery of the reliability tests (issue 6, "Done when").

The Haravan and MISA AMIS sandboxes run in a separate process (``hexaflow sandbox``) so that
they outlive the ``hexaflow run`` subprocesses the tests kill. Every test resets both sandboxes
(demo data, no faults) and uses its own state file in ``tmp_path``. "Exactly once" is judged
against a fault-free reference run of the same flow on a fresh state and a freshly reset
sandbox (the demo data is generated from a fixed seed, so it is the same world every time).

``RELIABILITY_HEXAFLOW`` may name another ``hexaflow`` executable to test (e.g. a patched one
when checking a fix); by default the one beside this Python.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from state_backends import StateTarget

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
HEXAFLOW = os.environ.get("RELIABILITY_HEXAFLOW") or str(Path(sys.executable).with_name("hexaflow"))
CREDENTIALS = {"HARAVAN_TOKEN": "reliability-haravan-token",
               "HARAVAN_WEBHOOK_SECRET": "reliability-webhook-secret",
               "MISA_APP_ID": "reliability-app",
               "MISA_ACCESS_CODE": "reliability-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
RUN_TIMEOUT = 60.0


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HARAVAN_", "MISA_", "HEXAFLOW_"))}
    env.update(extra)
    return env


class Sandboxes:
    """``hexaflow sandbox`` in its own process; admin helpers for both sandboxes."""

    def __init__(self, tmp: Path, credentials: dict[str, str] | None = None):
        self.credentials = dict(credentials or CREDENTIALS)
        self.log = tmp / "sandbox.out"
        self.proc = subprocess.Popen(
            [HEXAFLOW, "sandbox", "--data", "demo", "--orders", "200", "--rate-limit", "off"],
            env=base_env(**self.credentials), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.output: list[str] = []
        self.haravan = self.misa = ""
        deadline = time.monotonic() + 30
        while not (self.haravan and self.misa):
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("hexaflow sandbox did not start: " + "".join(self.output))
                continue
            self.output.append(line)
            if "export HARAVAN_BASE_URL=" in line:
                self.haravan = line.split("=", 1)[1].strip()
            if "export MISA_BASE_URL=" in line:
                self.misa = line.split("=", 1)[1].strip()
        self.http = httpx.Client(timeout=30)

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- configuration of a run ---------------------------------------------------------
    def env(self, state: Path | StateTarget, **extra: str) -> dict[str, str]:
        return base_env(HARAVAN_BASE_URL=self.haravan, MISA_BASE_URL=self.misa,
                        HEXAFLOW_STATE=str(state), **self.credentials, **extra)

    # -- admin --------------------------------------------------------------------------
    def reset(self, orders: int = 200) -> None:
        """Demo data in both, no faults, default options."""
        for url in (self.haravan, self.misa):
            r = self.http.post(f"{url}/_sandbox/faults", json={})
            assert r.status_code == 200, r.text
        r = self.http.post(f"{self.haravan}/_sandbox/faults", json={"rate_limit": False})
        assert r.status_code == 200, r.text
        r = self.http.post(f"{self.haravan}/_sandbox/reset", json={"data": "demo", "orders": orders})
        assert r.status_code == 200, r.text
        r = self.http.post(f"{self.misa}/_sandbox/reset", json={"data": "demo"})
        assert r.status_code == 200, r.text

    def faults(self, which: str, **body: Any) -> dict:
        r = self.http.post(f"{getattr(self, which)}/_sandbox/faults", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def injected(self, which: str) -> dict:
        return self.http.get(f"{getattr(self, which)}/_sandbox/faults").json()["injected"]

    def drain(self, timeout_s: float = 20) -> None:
        r = self.http.post(f"{self.misa}/_sandbox/drain", json={"timeout_s": timeout_s},
                           timeout=timeout_s + 10)
        assert r.status_code == 200, f"MISA did not process its queue in {timeout_s}s: {r.text}"

    def requests(self) -> list[dict]:
        return self.http.get(f"{self.misa}/_sandbox/requests").json()["requests"]

    def received(self) -> int:
        """Vouchers and dictionary entries MISA has received so far (a cheap count)."""
        stats = self.http.get(f"{self.misa}/_sandbox/stats").json()
        return int(stats["vouchers_received"]) + int(stats["dictionary_received"])

    def dictionary(self) -> dict[str, list[dict]]:
        return self.http.get(f"{self.misa}/_sandbox/dictionary").json()

    def haravan_state(self) -> dict:
        return self.http.get(f"{self.haravan}/_sandbox/state").json()

    # -- what MISA holds, in a comparable form ------------------------------------------
    def misa_snapshot(self) -> dict[str, Any]:
        """MISA's requests and customers after every queued call is processed."""
        self.drain()
        reqs = self.requests()
        dictionary = self.dictionary()
        return {
            "requests": reqs,
            "docs": Counter((r["org_refid"], r["refno_finance"], r["voucher_type"], r["status"])
                            for r in reqs),
            "refnos": Counter(r["refno_finance"] for r in reqs),
            "payloads": {r["org_refid"]: _canon(r["payload"]) for r in reqs},
            "customers": Counter(a["account_object_code"] for a in dictionary["account_objects"]),
        }


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def assert_same_documents(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected MISA document exactly once, nothing missing, nothing extra."""
    dup_refnos = {k: n for k, n in got["refnos"].items() if n > 1}
    assert not dup_refnos, f"refno_finance held more than once: {dup_refnos}"
    dup_docs = {k: n for k, n in got["docs"].items() if n > 1}
    assert not dup_docs, f"documents held more than once: {dup_docs}"
    missing = set(expected["docs"]) - set(got["docs"])
    extra = set(got["docs"]) - set(expected["docs"])
    assert not missing and not extra, (
        f"{len(missing)} missing (e.g. {sorted(missing)[:5]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:5]})")
    changed = [ref for ref, body in expected["payloads"].items() if got["payloads"].get(ref) != body]
    assert not changed, f"{len(changed)} documents differ from the reference: {changed[:5]}"
    dup_customers = {k: n for k, n in got["customers"].items() if n > 1}
    assert not dup_customers, f"customer codes held more than once: {dup_customers}"
    assert set(got["customers"]) == set(expected["customers"]), (
        f"customers missing: {sorted(set(expected['customers']) - set(got['customers']))[:10]}, "
        f"unexpected: {sorted(set(got['customers']) - set(expected['customers']))[:10]}")


# ------------------------------------------------------------------------------- runs
def hexaflow(args: list[str], env: dict[str, str], cwd: Path,
             timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([HEXAFLOW, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def run_until_done(flow: str, env: dict[str, str], cwd: Path, attempts: int = 8,
                   ok: tuple[int, ...] = (0,)) -> list[subprocess.CompletedProcess]:
    """Run a flow again while it exits non-zero (bounded); return every run."""
    runs = []
    for _ in range(attempts):
        done = hexaflow(["run", flow], env, cwd)
        runs.append(done)
        if done.returncode in ok:
            return runs
    tail = "\n".join(f"exit {r.returncode}: {r.stderr[-1500:]}" for r in runs[-2:])
    raise AssertionError(f"{flow} did not complete in {attempts} runs:\n{tail}")


def ledger_states(state: Path | StateTarget) -> Counter:
    if isinstance(state, StateTarget):
        return Counter(row["state"] for row in state.rows("SELECT state FROM ledger"))
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30)
    try:
        return Counter(row[0] for row in db.execute("SELECT state FROM ledger"))
    finally:
        db.close()


def ledger_rows(state: Path | StateTarget, where: str = "1=1") -> list[dict]:
    if isinstance(state, StateTarget):
        return state.rows(f"SELECT * FROM ledger WHERE {where}")
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(f"SELECT * FROM ledger WHERE {where}")]
    except sqlite3.OperationalError as exc:     # the run has not created its schema yet
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()




def haravan_snapshot(state: dict) -> dict[str, Any]:
    """Products by SKU (how many products hold each SKU) and on-hand stock per location × SKU."""
    skus: Counter = Counter()
    products = {}
    sku_of_variant = {}
    for product in state["products"]:
        for v in product.get("variants") or []:
            skus[v.get("sku")] += 1
            sku_of_variant[v["id"]] = v.get("sku")
            products[v.get("sku")] = (product.get("title"), str(v.get("price")),
                                      product.get("body_html"), product.get("published_at") is not None)
    stock = {(row["loc_id"], sku_of_variant.get(row["variant_id"])): row["qty_onhand"]
             for row in state["inventory"]}
    return {"product_count": len(state["products"]), "skus": skus, "products": products,
            "stock": stock}


def assert_same_haravan(got: dict[str, Any], expected: dict[str, Any]) -> None:
    g, e = haravan_snapshot(got), haravan_snapshot(expected)
    dup = {k: n for k, n in g["skus"].items() if n > 1}
    assert not dup, f"SKUs held by more than one variant/product: {dup}"
    assert g["product_count"] == e["product_count"], (g["product_count"], e["product_count"])
    assert g["products"] == e["products"], {k: (g["products"].get(k), v) for k, v in e["products"].items()
                                            if g["products"].get(k) != v}
    assert g["stock"] == e["stock"], {k: (g["stock"].get(k), v) for k, v in e["stock"].items()
                                      if g["stock"].get(k) != v}
