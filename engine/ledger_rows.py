"""The values the state store's ledger writes are made of, so that its methods take one
object each instead of a dozen loose arguments (docs/state.md describes the tables).

- ``RowRef``: which ledger row (tenant, flow, route, key) — the table's primary key;
- ``LedgerWrite``: a document about to be sent, or decided without sending;
- ``Outcome``: what became of it (the row's state and what the target said);
- ``DeadLetter``: a record or document that failed, with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hexaflow.connector import StockMove
from hexaflow.registry import get_connector

if TYPE_CHECKING:
    from hexaflow.plan import Document


@dataclass(frozen=True)
class RowRef:
    tenant: str
    flow: str
    route: str
    key: str


@dataclass(frozen=True)
class LedgerWrite:
    """A document as the ledger records it before the send. ``ensure``: a prerequisite a route
    ensured (its route is ``<route>.<ensure>``), not one of the flow's documents. ``stock``:
    what it will move in the target's stock once final (Connector.stock_moves)."""
    ref: RowRef
    connector: str
    document: str
    action: str
    source_id: str
    source_version: str | None
    payload: Any
    params: Any = None
    ensure: bool = False
    stock: tuple[StockMove, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """A row's new state. ``payload``, when given, replaces the recorded payload;
    ``attempted``: a send was made (counts towards the row's attempts)."""
    state: str
    target_ref: str | None = None
    code: str | None = None
    message: str | None = None
    payload: Any = None
    attempted: bool = True


@dataclass(frozen=True)
class DeadLetter:
    """A record (``record``) or one of its documents (``route``, ``key``, ``payload``) that
    failed. One open letter per (flow, record, route, key)."""
    tenant: str
    flow: str
    source_id: str
    reason: str
    record: Any = None
    route: str | None = None
    key: str | None = None
    payload: Any = None


def row_ref(tenant: str, doc: Document) -> RowRef:
    return RowRef(tenant, doc.flow, doc.route, doc.key)


def ledger_write(tenant: str, doc: Document, *, with_params: bool = True) -> LedgerWrite:
    """``doc`` as the ledger records it; ``with_params=False`` for a row decided without a
    send (a conflict, a prerequisite already in the target), which keeps no send parameters."""
    cls = get_connector(doc.connector)
    # From the payload itself, on every path that records one (a run, a resend, a conflict,
    # adopt): the stock held is always that of the payload the row holds.
    stock = tuple(cls.stock_moves(doc.document, doc.action, doc.payload)) if cls else ()
    return LedgerWrite(row_ref(tenant, doc), doc.connector, doc.document, doc.action,
                       doc.source_id, doc.source_version, doc.payload,
                       doc.params if with_params else None, doc.is_ensure, stock)
