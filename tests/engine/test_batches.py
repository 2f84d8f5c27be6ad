"""A run reads ahead, collects documents across pages into full batches, sends a batch when it
has waited long enough, and never makes a lone document wait (docs/performance.md).

The source and target here are small in-test connectors, so each test can hold a page or a
write until something else has happened; every such wait is bounded."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from hexaflow.connector import (DONE, Catalogue, Connector, DocumentInfo, Page, ResourceInfo,
                                WriteResult)
from hexaflow.plan import compile_plan
from hexaflow.registry import register_connector
from hexaflow.runner import Connectors, run_flow
from hexaflow.spec import load_spec
from hexaflow.state import SQLiteStore

WAIT = 10.0      # bound of every wait in these tests


class World:
    """What the test source serves and what the test target received, shared by both."""

    def __init__(self, pages: list[list[dict]], batch_size: int):
        self.pages = pages
        self.batch_size = batch_size
        self.events: list[str] = []
        self.writes: list[list[str]] = []
        self.asked: list[threading.Event] = [threading.Event() for _ in pages]
        self.written = threading.Event()
        self.after_first_write: set[int] = set()   # pages held until something was written
        self.hold_write: threading.Event | None = None


WORLD: World | None = None


class PagedSource(Connector):
    name = "test_paged"
    catalogue = Catalogue(resources={"items": ResourceInfo("items", incremental=("seq",))},
                          documents={"docs": DocumentInfo("docs")})

    def read(self, resource, params, since=None, *, cursor_field=None):
        for n, page in enumerate(WORLD.pages):
            WORLD.events.append(f"ask {n}")
            WORLD.asked[n].set()
            if n in WORLD.after_first_write:
                assert WORLD.written.wait(WAIT), f"nothing was written before page {n} was asked for"
            WORLD.events.append(f"read {n}")
            yield Page([dict(r) for r in page])

    def write(self, items):
        if WORLD.hold_write is not None:
            assert WORLD.hold_write.wait(WAIT), "the write was never released"
        WORLD.events.append(f"write {len(items)}")
        WORLD.writes.append([i.key for i in items])
        WORLD.written.set()
        return [WriteResult(i.ref, DONE, target_ref=i.key) for i in items]

    @property
    def batch_size(self) -> int:
        return WORLD.batch_size


FLOW = """
flow: batches
source: {connector: test_paged, resource: items, as: item, id: seq, incremental: {cursor: seq}}
routes:
  - name: doc
    target: {connector: test_paged, document: docs}
    key: "D_<<item.seq>>"
    fields:
      seq: "=item.seq"
"""


@pytest.fixture
def run(tmp_path, monkeypatch):
    register_connector("test_paged", PagedSource)
    (tmp_path / "flow.yaml").write_text(FLOW)
    plan, problems = compile_plan(load_spec(tmp_path / "flow.yaml"))
    assert plan is not None, problems

    def _run(pages: list[list[dict]], batch_size: int = 100, delay: float = 60.0,
             **world: Any) -> tuple[World, Any]:
        global WORLD
        WORLD = World(pages, batch_size)
        for name, value in world.items():
            setattr(WORLD, name, value)
        monkeypatch.setenv("HEXAFLOW_BATCH_DELAY", str(delay))
        monkeypatch.setenv("HEXAFLOW_SETTLE_SECONDS", "0")
        store = SQLiteStore(str(tmp_path / "state.db"))
        connectors = Connectors("t", tmp_path, {})
        try:
            summary = run_flow(plan, tenant="t", store=store, connectors=connectors)
            cursor = store.get_cursor("t", "batches")
        finally:
            connectors.close()
            store.close()
        return WORLD, (summary, cursor)
    return _run


def pages_of(sizes: list[int]) -> list[list[dict]]:
    seq, pages = 0, []
    for size in sizes:
        pages.append([{"seq": seq + i} for i in range(size)])
        seq += size
    return pages


def test_documents_are_collected_across_pages_into_full_batches(run):
    world, (summary, cursor) = run(pages_of([7] * 10), batch_size=20)
    assert [len(w) for w in world.writes] == [20, 20, 20, 10]
    assert [k for w in world.writes for k in w] == [f"D_{n}" for n in range(70)]
    assert summary.routes["doc"]["written"] == 70
    assert cursor == "69"


def test_a_lone_document_is_sent_at_the_end_of_the_run_not_after_the_delay(run):
    world, (summary, _) = run(pages_of([1]), batch_size=100, delay=3600)
    assert world.writes == [["D_0"]]
    assert summary.routes["doc"]["written"] == 1


def test_a_batch_that_waited_long_enough_goes_out_before_the_next_page_arrives(run):
    # Page 1 is held until the first write happened: only the delay can send page 0's batch.
    world, (summary, _) = run(pages_of([3, 3]), batch_size=100, delay=0.05,
                              after_first_write={1})
    assert [e for e in world.events if not e.startswith("ask")] == \
        ["read 0", "write 3", "read 1", "write 3"]
    assert summary.routes["doc"]["written"] == 6


def test_pages_are_read_while_a_batch_is_being_written(run):
    # The first write is held until the source has been asked for page 3: a run that read
    # and wrote in turn would never ask for it and the write would time out.
    asked_third = threading.Event()
    world, (summary, _) = run(pages_of([5, 5, 5, 5]), batch_size=5, hold_write=asked_third,
                              asked=[threading.Event(), threading.Event(), asked_third,
                                     threading.Event()])
    assert world.events.index("ask 2") < world.events.index("write 5")
    assert summary.routes["doc"]["written"] == 20
