"""The books test at scale: N lifecycles (10,000 by default) drawn from the grammar of
tests/flows/test_books.py, the orders flow run between random steps, every document posted by
the MISA sandbox's ledger, the §5b invariants checked after every run. Prints lifecycles per
second, documents, runs and the invariants broken (0 expected).

    python bench/books.py [N]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "flows"))
from test_books import LIFECYCLE, play  # noqa: E402


def main(count: int) -> int:
    totals = {"lifecycles": 0, "documents": 0, "broken": 0}
    broken_examples: list[list[str]] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(LIFECYCLE)
    def one(lifecycle):
        books, _, broken = play(lifecycle)
        totals["lifecycles"] += 1
        totals["documents"] += books.documents
        if broken:
            totals["broken"] += 1
            if len(broken_examples) < 3:
                broken_examples.append(broken)

    start = time.perf_counter()
    one()
    seconds = time.perf_counter() - start
    print(f"lifecycles          {totals['lifecycles']}")
    print(f"documents posted    {totals['documents']}")
    print(f"lifecycles/s        {totals['lifecycles'] / seconds:.1f}")
    print(f"seconds             {seconds:.1f}")
    print(f"invariants broken   {totals['broken']} lifecycles")
    for example in broken_examples:
        print("  ", example)
    return 1 if totals["broken"] else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
