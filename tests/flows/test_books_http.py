"""The books over HTTP: lifecycles played on the Haravan sandbox, the orders flow run by the CLI
against both sandboxes, the MISA sandbox in accountant mode posting every accepted request, and
the §5b invariants checked through ``GET /_sandbox/ledger``.

``test_books.py`` proves the invariants on thousands of lifecycles in one process, with the same
ledger rules (connectors/misa/ledger.py) called directly; this test proves that shortcut honest:
for each lifecycle drawn here, the books MISA's sandbox holds after the real runs equal, account
by account, the books of the same lifecycle played in process.
"""
from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from books import COST, Books, orders_plan
from e2e_world import World
from hexaflow.connectors.haravan.sandbox_store import HaravanShop
from hexaflow.connectors.sandbox_world import CATALOGUE
from test_books import LIFECYCLE, play

EXAMPLES = int(os.environ.get("HEXAFLOW_BOOKS_HTTP_EXAMPLES", "12"))
DEFAULTS = orders_plan()          # the packaged mappings as the CLI runs them


class HttpBooks(Books):
    """Books whose documents are written by ``hexaflow run`` and posted by the MISA sandbox."""
    world: World

    def sync(self, oid: int) -> int:
        before = len(self.world.request_list())
        self.world.run("orders")
        self.world.wait_settled()
        new = len(self.world.request_list()) - before
        self.documents += new
        return new

    def report(self, oid: int) -> dict[str, Any]:
        answer = self.world.http.get(f"{self.world.misa_url}/_sandbox/ledger", params={"org_refno": str(oid)})
        assert answer.status_code == 200, answer.text
        return answer.json()


def _company(world: World) -> None:
    """The MISA company holds the catalogue's items at their cost, and posts what it accepts."""
    entries = [{"dictionary_type": 3, "inventory_item_code": p.sku, "inventory_item_name": p.title,
                "inventory_item_type": 0, "unit_name": p.unit, "unit_price": str(p.cost)} for p in CATALOGUE]
    for path, body in (("dictionary", {"dictionary": entries}),
                       ("costs", {"costs": {sku: str(cost) for sku, cost in COST.items()}}),
                       ("options", {"accountant": True})):
        answer = world.http.post(f"{world.misa_url}/_sandbox/{path}", json=body)
        assert answer.status_code == 200, answer.text


def _codes(books: Books, oid: int) -> list[str]:
    return sorted(str(r["refno_finance"]).replace(str(oid), "<id>") for r in books.report(oid)["journal"])


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(lifecycle=LIFECYCLE.map(lambda lc: {**lc, "settings": {}}))
def test_the_books_balance_through_the_sandboxes_and_match_the_books_in_process(world, sandboxes, lifecycle):
    haravan, _misa, _config = sandboxes
    if not getattr(world, "company_ready", False):     # once per test: examples share the world
        _company(world)
        world.company_ready = True
    shop: HaravanShop = haravan.app.shop
    books = HttpBooks(DEFAULTS, shop=shop)
    books.world = world
    books, oid, broken = play(lifecycle, books=books)
    assert broken == [], (broken, books.order(oid)["transactions"], books.balances(oid))

    alone, alone_id, _ = play(lifecycle)
    assert books.balances(oid) == alone.balances(alone_id)
    assert books.stock(oid) == alone.stock(alone_id)
    assert _codes(books, oid) == _codes(alone, alone_id)
