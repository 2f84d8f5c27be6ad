"""The engine runs a flow whose source is the Haravan sandbox, and resumes from its cursor."""
from __future__ import annotations

import re
from pathlib import Path

from hexaflow.connectors.sandbox_world import WAREHOUSES
from hexaflow.runner import Connectors, load_plan, run_flow
from hexaflow.state import open_store

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "orders-to-file"
SOURCE = """source:
  connector: haravan
  resource: orders
  as: order
  incremental: {cursor: updated_at}
"""


def test_flow_reads_orders_from_haravan_and_resumes(shop, tmp_path, monkeypatch):
    text = (EXAMPLE / "flow.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^source:\n(?:  .*\n)+", SOURCE, text, count=1)
    (tmp_path / "flow.yaml").write_text(text, encoding="utf-8")
    # The example's table maps two warehouses; the sandbox shop has all of sandbox_world's.
    (tmp_path / "warehouses.yaml").write_text(
        "".join(f'"{w.location_id}": {w.stock_code}\n' for w in WAREHOUSES), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEXAFLOW_FILE_OUT", str(tmp_path / "out"))
    config = {"HARAVAN_BASE_URL": shop.url, "HARAVAN_TOKEN": shop.token,
              "HARAVAN_OVERLAP_SECONDS": "0", "HEXAFLOW_FILE_OUT": str(tmp_path / "out")}
    plan = load_plan(tmp_path / "flow.yaml")
    store = open_store(str(tmp_path / "state.db"))

    def run():
        connectors = Connectors("t1", plan.base_dir, config)
        try:
            return run_flow(plan, tenant="t1", store=store, connectors=connectors)
        finally:
            connectors.close()

    first = run()
    assert first.records == 60 and not first.failed
    assert run().records == 0
    order_id = shop.state()["orders"][0]["id"]
    shop.admin("POST", f"/orders/{order_id}/fulfill")
    assert run().records == 1
