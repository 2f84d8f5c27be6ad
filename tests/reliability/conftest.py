"""Fixtures of the reliability tests; the machinery is in reliability_kit.py."""
from __future__ import annotations


import pytest

from reliability_kit import MAPPINGS, Sandboxes, hexaflow


@pytest.fixture(scope="session")
def sandboxes(tmp_path_factory) -> Sandboxes:
    boxes = Sandboxes(tmp_path_factory.mktemp("sandbox"))
    yield boxes
    boxes.close()


@pytest.fixture(scope="session")
def reference(sandboxes: Sandboxes, tmp_path_factory):
    """reference(flows, orders) → MISA snapshot after a clean run of the flows (cached)."""
    cache: dict[tuple, dict] = {}

    def get(flows: tuple[str, ...], orders: int = 200) -> dict[str, Any]:
        key = (flows, orders)
        if key not in cache:
            tmp = tmp_path_factory.mktemp("reference")
            sandboxes.reset(orders)
            env = sandboxes.env(tmp / "state.db")
            for flow in flows:
                done = hexaflow(["run", str(MAPPINGS / f"{flow}.yaml")], env, tmp)
                assert done.returncode == 0, done.stderr
            snap = sandboxes.misa_snapshot()
            snap["haravan"] = sandboxes.haravan_state()
            cache[key] = snap
        return cache[key]
    return get
