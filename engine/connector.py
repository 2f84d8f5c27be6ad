"""The contract between the engine and a connector.

A connector is one class per external system (a file, a shop, an accounting system). The engine never
knows which: it reads records from a *resource*, writes payloads as *documents*, and asks for
results of asynchronous writes. Everything system-specific (auth, pagination, rate limits,
envelopes, enum quirks) stays inside the connector.

Lifecycle of one run, from the engine's side:

    connector = ConnectorClass(ConnectorContext(...))
    for page in connector.read(resource, params, since=cursor):   # incremental read
        ...map records...
    results = connector.write(items)                              # batched writes
    updates = connector.poll(pending_refs)                        # async acceptance
    connector.close()

A write is *settled* once the target acknowledged it: ``done`` (synchronous targets) or
``queued`` (targets that validate asynchronously). A ``queued`` item later moves to
``accepted`` or ``rejected`` through :meth:`Connector.poll` or a callback receiver.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Iterable, Iterator, Mapping, Sequence

from hexaflow.errors import ConfigError as ConfigError, ConnectorError  # re-exported for connectors

# A webhook or callback body nests a few levels; one nesting more than this is refused unread
# (parsing and normalising it recurses: a 100,000-deep list, signed, would crash the receiver).
MAX_DELIVERY_DEPTH = 64


class JSONTooDeep(ValueError):
    """JSON nested deeper than a receiver accepts (see loads_json)."""


def loads_json(data: bytes | str, max_depth: int | None = None) -> Any:
    """JSON with Decimal for fractions (never binary floats). ValueError for JSON that does not
    parse; JSONTooDeep for nesting deeper than ``max_depth`` levels, or so deep that the parser
    itself gives up (RecursionError)."""
    try:
        value = json.loads(data, parse_float=Decimal)
    except RecursionError:
        raise JSONTooDeep("its JSON nests too deeply to be read") from None
    if max_depth is not None and _nests_deeper(value, max_depth):
        raise JSONTooDeep(f"its JSON nests more than {max_depth} levels deep") from None
    return value


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than ``limit`` levels (without recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


# Per-item outcome of a write, as reported by a connector.
DONE = "done"            # written and final (synchronous target)
QUEUED = "queued"        # accepted for asynchronous processing; result comes later
REJECTED = "rejected"    # the target refused this item; will not succeed by retrying
CONFLICT = "conflict"    # the target holds a version that can no longer change (e.g. generated)
FAILED = "failed"        # transient failure after bounded retries; safe to retry later
WRITE_STATUSES = (DONE, QUEUED, REJECTED, CONFLICT, FAILED)

# Outcomes reported later for queued items.
ACCEPTED = "accepted"
GENERATED = "generated"
POSTED = "posted"
DELETED = "deleted"
ASYNC_STATUSES = (ACCEPTED, REJECTED, CONFLICT, GENERATED, POSTED, DELETED)


@dataclass(frozen=True)
class ResourceInfo:
    """A readable resource in a connector's catalogue."""
    name: str
    description: str = ""
    params: Mapping[str, str] = field(default_factory=dict)   # param name -> description
    incremental: Sequence[str] = ()                           # fields usable as cursor ("*": any)
    fields: Sequence[str] = ()                                # known top-level fields ("" = unknown)


@dataclass(frozen=True)
class DocumentInfo:
    """A writable document kind in a connector's catalogue."""
    name: str
    description: str = ""
    actions: Sequence[str] = ("upsert", "create")             # supported write actions
    params: Mapping[str, str] = field(default_factory=dict)
    # Fields a mapping must never target, with the reason shown by `validate`.
    forbidden_fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigVar:
    """A configuration variable a connector reads (listed by ``hexaflow init`` in
    ``.env.example``; the value itself is never shown anywhere)."""
    name: str
    description: str
    required: bool = False
    secret: bool = False
    default: str | None = None


@dataclass(frozen=True)
class Catalogue:
    resources: Mapping[str, ResourceInfo] = field(default_factory=dict)
    documents: Mapping[str, DocumentInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectorContext:
    """What the engine hands a connector when it starts one."""
    tenant: str = "default"
    # Configuration values (from the environment or a config file); secrets included,
    # so never log this mapping.
    config: Mapping[str, str] = field(default_factory=dict)
    base_dir: str = "."          # folder of the flow file, for relative paths
    logger_name: str = "hexaflow"


@dataclass
class Page:
    """One page of records from :meth:`Connector.read`.

    ``cursor`` is the value to resume from once every record of this page is handled
    (None: derive it from the records' cursor field).
    """
    records: list[dict[str, Any]]
    cursor: Any = None


@dataclass(frozen=True)
class WriteItem:
    """One document the engine asks a connector to write."""
    ref: str                   # engine's id for this item; echoed back in WriteResult
    document: str              # document kind from the catalogue
    action: str                # "upsert" | "create" | "delete"
    key: str                   # the document code (idempotency key)
    payload: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentDraft:
    """A document as the flow built it, before its connector completes it (see
    :meth:`Connector.complete_payload`)."""
    document: str              # document kind from the catalogue
    action: str                # "upsert" | "create" | "delete"
    key: str                   # the document code
    payload: Mapping[str, Any]
    route: str                 # the route (or "route.ensure") that built it, for messages


@dataclass(frozen=True)
class StockMove:
    """What a document will move in its target's stock once the target makes it final (for
    an accounting system: once the voucher is posted). ``quantity`` is signed: below zero an
    issue (a sale leaving the warehouse), above zero a receipt (goods coming back)."""
    place: str                 # the target's warehouse code
    item: str                  # the target's item code
    quantity: Decimal


@dataclass(frozen=True)
class WriteResult:
    ref: str
    status: str                # one of WRITE_STATUSES
    target_ref: str | None = None   # the target's id for the document (for later results)
    code: str | None = None         # the target's error code, kept verbatim
    message: str | None = None      # the target's message, kept verbatim


@dataclass(frozen=True, slots=True)    # a poll may hold one per document of a long run
class AsyncResult:
    """A later outcome of a queued write, from polling or a callback."""
    target_ref: str
    status: str                # one of ASYNC_STATUSES
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class ReceivedEvent:
    """A record that changed in the source, as told by a webhook (a trigger, not the data:
    the run reads the record from the source)."""
    resource: str              # resource name from the catalogue, e.g. "orders"
    record_id: str
    version: str | None = None  # e.g. the record's updated_at; a new version is a new event


@dataclass
class Received:
    """What a connector made of one delivery to ``POST /hooks/<connector>``.

    ``status`` and ``body`` are the HTTP answer (``body`` JSON-serialisable). A status >= 400
    means the delivery is refused (401: missing or forged signature) and nothing in it is
    stored; the body must then say why without any secret.

    ``to_confirm`` holds results that cannot be undone (a document generated or deleted):
    they are not applied as told; the flows writing to this connector run, and their
    :meth:`Connector.poll` of the target applies what the target really did. ``digest``
    identifies what the delivery's signature covers: a delivery whose digest was seen before
    (a replay, or a retry of one already applied) is acknowledged and applies nothing.
    """
    status: int = 200
    body: Any = None
    events: list[ReceivedEvent] = field(default_factory=list)     # webhooks
    results: list[AsyncResult] = field(default_factory=list)      # asynchronous-write callbacks
    to_confirm: list[AsyncResult] = field(default_factory=list)
    digest: str | None = None

    @property
    def refused(self) -> bool:
        return self.status >= 400


class Connector:
    """Base class for connectors. Subclasses set ``name`` and ``catalogue``.

    ``catalogue`` is class-level data so that ``hexaflow validate`` can check flows without
    credentials or network.
    """

    name: ClassVar[str] = ""
    catalogue: ClassVar[Catalogue] = Catalogue()
    # The variables the connector reads from its configuration, for people and `hexaflow init`.
    config_vars: ClassVar[Sequence[ConfigVar]] = ()
    # How many documents one ``write`` call should carry: a run collects documents across
    # pages until this many wait (or a short delay passes), so the target sees full batches.
    batch_size: int = 100

    def __init__(self, context: ConnectorContext):
        self.context = context

    @classmethod
    def complete_payload(cls, draft: DocumentDraft) -> dict[str, Any]:
        """The payload the target needs for ``draft``: the flow's fields plus what follows from
        the document kind alone (the target's mechanics, not the integrator's choices). A class
        method so that dry runs, tests and explain show it without credentials. Default: the
        payload as the flow built it."""
        return dict(draft.payload)

    @classmethod
    def stock_moves(cls, document: str, action: str, payload: Mapping[str, Any]) -> list[StockMove]:
        """The stock ``payload`` (a ``document`` written with ``action``, as completed) will move
        in the target once the target makes it final. The ledger keeps these while the document
        is not final, and a flow reading this connector's stock sees them as ``pending_stock``
        (docs/state.md, "Stock held by open documents"). A class method, like complete_payload:
        it follows from the document alone. Default: documents move no stock."""
        return []

    def read(self, resource: str, params: Mapping[str, Any], since: Any = None, *,
             cursor_field: str | None = None) -> Iterator[Page]:
        """Yield pages of records of ``resource``, oldest change first when ``since`` is given.

        ``since`` is the cursor saved after the last handled record (None: read everything);
        ``cursor_field`` is the flow's ``incremental.cursor`` (connectors with a fixed cursor
        may ignore it). Records are plain dicts, already normalised (money as Decimal, enums
        canonical).
        """
        raise NotImplementedError(f"connector {self.name!r} cannot read")

    def read_one(self, resource: str, record_id: str,
                 params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """One record of ``resource`` by its id, shaped exactly as :meth:`read` yields it;
        None when the source has no such record (optional; ``hexaflow explain --id``).
        ``params`` are the flow's ``source.params``. Must not change anything in the source."""
        raise ConnectorError(f"connector {self.name!r} cannot fetch one record by its id; "
                             f"save the record to a JSON file and give that instead")

    @classmethod
    def can_read_one(cls) -> bool:
        return cls.read_one is not Connector.read_one

    def write(self, items: Sequence[WriteItem]) -> list[WriteResult]:
        """Write a batch; return exactly one result per item, in any order.

        Must not raise for per-item failures (report REJECTED / CONFLICT / FAILED instead);
        raise ConnectorError only when nothing can work (bad credentials).
        """
        raise NotImplementedError(f"connector {self.name!r} cannot write")

    def exists(self, document: str, key: str) -> bool | None:
        """Whether the target already holds ``document`` with ``key``; None if it cannot tell."""
        return None

    def references(self, kind: str, codes: Iterable[str]) -> dict[str, str | None] | None:
        """What the target holds of the things settings name (``hexaflow check``): for each of
        ``codes`` of ``kind`` (a kind of the connector's own, e.g. an accounting system's
        "account"), None when the target holds it and it can be used, else why not ("is not in the chart of
        accounts"). None when the connector cannot tell about ``kind``. Must not change
        anything in the target."""
        return None

    def poll(self, target_refs: Iterable[str]) -> list[AsyncResult]:
        """Outcomes of earlier queued writes that are known now (may be empty)."""
        return []

    # -- a state store that lost what it knew (docs/state.md, "A lost state store") ------
    def written_before(self) -> bool | None:
        """Whether the target already holds documents that this tenant's runs wrote (asked
        when the state store holds nothing of the tenant: it may have been lost); None when
        the target cannot tell, or when writing again is harmless (it matches by code)."""
        return None

    def target_ref(self, item: WriteItem) -> str | None:
        """The ref under which the target knows ``item`` once written (what ``write`` puts in
        its WriteResult.target_ref); None when there is none."""
        return None

    def held(self, target_refs: Iterable[str]) -> dict[str, str]:
        """ref → state (accepted, generated, posted, ...) of each of these documents the
        target holds, however long ago it was written (``hexaflow adopt``); refs it does not
        hold are left out. Default: what ``poll`` knows."""
        return {r.target_ref: r.status for r in self.poll(target_refs)}

    def receive(self, raw_body: bytes, headers: Mapping[str, str]) -> Received:
        """Verify and read one webhook or callback delivery (optional; ``hexaflow serve``
        offers ``POST /hooks/<name>`` only for connectors that implement it).

        Must check the signature over ``raw_body`` exactly as received, do no I/O (the
        receiver answers fast) and be safe to call from several threads at once.
        """
        raise NotImplementedError(f"connector {self.name!r} receives no webhooks or callbacks")

    @classmethod
    def can_receive(cls) -> bool:
        return cls.receive is not Connector.receive

    def close(self) -> None:
        """Release network clients and files."""

    def __enter__(self) -> "Connector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
