"""MisaConnector: the engine's view of MISA AMIS Kế toán.

Writes are asynchronous in MISA: ``save`` only queues a *voucher request*, so every accepted write
is reported QUEUED and its outcome arrives later, through a callback (see ``callbacks.py``) or
:meth:`MisaConnector.poll`. Target refs: a voucher's ``org_refid``; a dictionary entry's
``dictionary:<dictionary_type>:<code>``.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, Mapping, Sequence

from hexaflow.connector import (ACCEPTED, CONFLICT, DELETED, FAILED, GENERATED, QUEUED, REJECTED,
                                AsyncResult, Catalogue, ConfigVar, Connector, ConnectorContext,
                                DocumentDraft, DocumentInfo, Page, Received, ResourceInfo, StockMove,
                                WriteItem, WriteResult)
from hexaflow.timeutil import get_zone

from .callbacks import CallbackError, CallbackSignatureError, parse_callback, results_from_data
from .client import MisaClient, MisaSettings
from .mechanics import complete_voucher, voucher_stock_moves
from .errors import AUTH_CODES, MisaAuthError, MisaError, MisaTokenError, MisaTransportError
from .records import canonical_text, normalise

log = logging.getLogger("hexaflow.misa")

VOUCHER = "voucher"
DICTIONARY = "dictionary"

# get_dictionary data_type (read numbering) per resource.
DICTIONARY_RESOURCES = {"customers": 1, "items": 2, "stocks": 3, "units": 4, "accounts": 5,
                        "bank_accounts": 8}
# save_dictionary dictionary_type (push numbering) -> (read data_type, code field).
PUSH_TYPES = {1: (1, "account_object_code"), 3: (2, "inventory_item_code"),
              5: (3, "stock_code"), 6: (4, "unit_name")}

_CUSTOMER_FIELDS = ("account_object_id", "account_object_code", "account_object_name",
                    "account_object_type", "is_customer", "is_vendor", "is_employee", "address",
                    "tel", "mobile", "email_address", "company_tax_code", "receive_account",
                    "pay_account", "branch_id", "inactive", "modified_date")
_ITEM_FIELDS = ("inventory_item_id", "inventory_item_code", "inventory_item_name",
                "inventory_item_type", "unit_id", "unit_name", "unit_price", "sale_price1",
                "fixed_sale_price", "tax_rate", "inventory_account", "cogs_account",
                "sale_account", "discount_account", "return_account", "default_stock_id",
                "inactive", "branch_id", "created_date", "modified_date")
_STOCK_FIELDS = ("stock_id", "stock_code", "stock_name", "branch_id", "inventory_account",
                 "inactive", "description")
_UNIT_FIELDS = ("unit_id", "unit_name", "description", "inactive")
_ACCOUNT_FIELDS = ("account_id", "account_number", "account_name", "grade", "parent_id",
                   "is_parent", "inactive")
_BANK_ACCOUNT_FIELDS = ("bank_account_id", "bank_account_number", "bank_name",
                        "bank_branch_name", "inactive")
_BALANCE_FIELDS = ("inventory_item_id", "inventory_item_code", "inventory_item_name", "stock_id",
                   "stock_code", "stock_name", "organization_unit_id", "organization_unit_code",
                   "organization_unit_name", "quantity_balance", "amount_balance", "unit_price")

# Callback results that cannot be undone are applied only once a poll confirms them (reference
# §2.6: a generated voucher cannot be deleted through the API, a deleted request is gone).
# Posted is not among them: it comes only from signed data_type 22 data (no other data type's
# data reads as it), it follows a confirmed generation, and AMIS can unpost a voucher.
CONFIRM_BY_POLL = (GENERATED, DELETED)

_INCREMENTAL = {"since": "CustomData.LastSyncTime from the previous run (opaque string)"}
_BRANCH = {"branch_id": "restrict to one branch (GUID from get_dictionary data_type 6)"}


def _resources() -> dict[str, ResourceInfo]:
    fields = {"customers": _CUSTOMER_FIELDS, "items": _ITEM_FIELDS, "stocks": _STOCK_FIELDS,
              "units": _UNIT_FIELDS, "accounts": _ACCOUNT_FIELDS,
              "bank_accounts": _BANK_ACCOUNT_FIELDS}
    names = {"customers": "account objects (customers, vendors, employees)",
             "items": "inventory items (vật tư hàng hóa)", "stocks": "warehouses (kho)",
             "units": "units of measure (ĐVT)", "accounts": "chart of accounts (hệ thống tài khoản)",
             "bank_accounts": "the company's bank accounts"}
    out: dict[str, ResourceInfo] = {}
    for resource, data_type in DICTIONARY_RESOURCES.items():
        out[resource] = ResourceInfo(
            resource, f"MISA {names[resource]}: get_dictionary data_type {data_type}",
            params=_BRANCH, incremental=("LastSyncTime",), fields=fields[resource])
        out[f"deleted_{resource}"] = ResourceInfo(
            f"deleted_{resource}",
            f"{names[resource]} deleted in MISA: get_dictionary_delete data_type {data_type}",
            params=_BRANCH, incremental=("LastSyncTime",))
    out["inventory_balance"] = ResourceInfo(
        "inventory_balance", "on-hand quantity and value per item × warehouse "
        "(get_list_inventory_balance; a full snapshot every run)",
        params={"stock_id": "restrict to one warehouse (GUID)", **_BRANCH},
        fields=_BALANCE_FIELDS)
    return out


CATALOGUE = Catalogue(
    resources=_resources(),
    documents={
        VOUCHER: DocumentInfo(
            VOUCHER, "A voucher request (đề nghị lập chứng từ): the payload is MISA's voucher "
            "object with voucher_type, reftype, org_refid, detail, ... Processed asynchronously.",
            actions=("upsert", "create", "delete"),
            forbidden_fields={"app_id": "added by the connector from MISA_APP_ID",
                              "org_company_code": "added by the connector from "
                                                  "MISA_ORG_COMPANY_CODE"}),
        DICTIONARY: DocumentInfo(
            DICTIONARY, "A master-data entry for save_dictionary: the payload carries "
            "dictionary_type (1 account object, 3 inventory item, 5 stock, 6 unit) and MISA's "
            "fields; matched by code.",
            actions=("upsert", "create"),
            forbidden_fields={
                "app_id": "added by the connector from MISA_APP_ID",
                "org_company_code": "added by the connector",
                # R-CUS-3: MISA AMIS has no API that puts a customer into a customer group.
                **{name: "MISA AMIS has no API to put a customer into a customer group; "
                         "assign the group by hand in AMIS (Danh mục → Khách hàng)"
                   for name in ("account_object_group_id_list", "account_object_group_code_list",
                                "account_object_group_name_list",
                                "account_object_group_misa_code_list",
                                "account_object_group_code", "account_object_group_id",
                                "customer_group")}}),
    })


def _code_field(entry: Mapping[str, Any]) -> str | None:
    """The field MISA matches this dictionary entry by, for the types we read back."""
    try:
        return PUSH_TYPES[int(entry["dictionary_type"])][1]
    except (KeyError, TypeError, ValueError):
        return None


def dictionary_ref(entry: Mapping[str, Any]) -> str:
    dtype = entry.get("dictionary_type")
    code_field = _code_field(entry)
    code = entry.get(code_field) if code_field else None
    if not code:
        code = next((v for k, v in entry.items() if k.endswith("_code") and v), None)
    # The code as get_dictionary reads it back (canonical), so polling finds the entry.
    return f"dictionary:{dtype}:{canonical_text(code_field or '_code', code)}"


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def _vn_now() -> datetime:
    return datetime.now(get_zone("Asia/Ho_Chi_Minh"))


# What the connector reads from its configuration (docs/connectors/misa.md, Configuration).
CONFIG_VARS = (
    ConfigVar("MISA_APP_ID", "the partner application id MISA issued (classic auth style)",
              required=True),
    ConfigVar("MISA_ACCESS_CODE", "the connection code the company's AMIS admin generated "
              "(Thiết lập → Kết nối ứng dụng)", required=True, secret=True),
    ConfigVar("MISA_ORG_COMPANY_CODE", "the company code shown on AMIS's API-connection screen",
              required=True),
    ConfigVar("MISA_BASE_URL", "where the API lives; the sandbox URL to test",
              default="https://actapp.misa.vn"),
    ConfigVar("MISA_AUTH_STYLE", "classic or gateway (unverified)", default="classic"),
    ConfigVar("MISA_CLIENT_ID", "the developer-portal client id (gateway style only)"),
    ConfigVar("MISA_CALLBACK_KEY", "HMAC key of callback signatures, for `hexaflow serve` "
              "(default: the app id, which every callback carries in clear: set the key when "
              "MISA gives you one)", secret=True),
    ConfigVar("MISA_PAGE_SIZE", "records per paged read (at most 1000)", default="100"),
    ConfigVar("MISA_SAVE_BATCH", "vouchers per save call", default="100"),
    ConfigVar("MISA_DICTIONARY_BATCH", "entries per save_dictionary call", default="200"),
    ConfigVar("MISA_TOKEN_MARGIN_S", "renew the token this long before it expires",
              default="600"),
    ConfigVar("MISA_POLL_LOOKBACK_H", "how far back results are polled, in hours", default="72"),
    ConfigVar("MISA_ADOPT_LOOKBACK_D", "how far back, in days, a run with a new state store "
              "looks for documents this app wrote, and `hexaflow adopt` finds them",
              default="365"),
    ConfigVar("MISA_MAX_CALLS_PER_S", "client-side rate limit (0: off)", default="0"),
    ConfigVar("MISA_TIMEOUT_S", "HTTP timeout in seconds", default="30"),
)


class MisaConnector(Connector):
    name = "misa"
    catalogue = CATALOGUE
    config_vars = CONFIG_VARS

    def __init__(self, context: ConnectorContext | None = None, *,
                 settings: MisaSettings | None = None):
        super().__init__(context or ConnectorContext())
        self.settings = settings or MisaSettings.from_config(self.context.config)
        self.client = MisaClient(self.settings)
        self.batch_size = self.settings.save_batch      # a run fills each save call

    @classmethod
    def complete_payload(cls, draft: DocumentDraft) -> dict[str, Any]:
        """MISA's voucher mechanics (``*_oc`` twins, refid, currency, ...), see mechanics.py."""
        return complete_voucher(draft)

    @classmethod
    def stock_moves(cls, document: str, action: str, payload: Mapping[str, Any]) -> list[StockMove]:
        """What a voucher request will move in MISA's stock once posted (mechanics.py)."""
        return voucher_stock_moves(document, action, payload)

    # -- reads ------------------------------------------------------------------------
    def read(self, resource: str, params: Mapping[str, Any], since: Any = None, *,
             cursor_field: str | None = None) -> Iterator[Page]:
        params = params or {}
        if resource == "inventory_balance":
            yield from self._read_balance(params)
            return
        deleted = resource.startswith("deleted_")
        base = resource[len("deleted_"):] if deleted else resource
        if base not in DICTIONARY_RESOURCES:
            raise MisaError("InvalidParam", f"unknown MISA resource {resource!r}; known: "
                                            f"{sorted(self.catalogue.resources)}")
        function = "get_dictionary_delete" if deleted else "get_dictionary"
        body = {**self.client.base_body(company=False), "data_type": DICTIONARY_RESOURCES[base],
                "branch_id": params.get("branch_id"), "last_sync_time": since}
        yield from self._paged(function, body, since, incremental=True)

    def _read_balance(self, params: Mapping[str, Any]) -> Iterator[Page]:
        # The endpoint ignores last_sync_time (reference §2.5): always a full snapshot.
        body = {**self.client.base_body(), "stock_id": params.get("stock_id"),
                "branch_id": params.get("branch_id"), "last_sync_time": None}
        yield from self._paged("get_list_inventory_balance", body, None, incremental=False)

    def _paged(self, function: str, body: dict[str, Any], since: Any,
               incremental: bool) -> Iterator[Page]:
        take = self.settings.page_size
        skip = 0
        while True:
            envelope = self.client.call(function, {**body, "skip": skip, "take": take})
            envelope.raise_for_error()
            rows = envelope.data if isinstance(envelope.data, list) else []
            records = [normalise(r) for r in rows if isinstance(r, Mapping)]
            last = len(rows) < take
            # Only the last page moves the watermark: resuming from a later LastSyncTime
            # after a crash mid-way would skip the pages not yet handled.
            cursor = None
            if incremental:
                cursor = (envelope.custom("LastSyncTime") or since) if last else since
            yield Page(records, cursor=cursor)
            if last:
                return
            skip += take

    # -- writes -----------------------------------------------------------------------
    def write(self, items: Sequence[WriteItem]) -> list[WriteResult]:
        results: dict[str, WriteResult] = {}
        saves: list[WriteItem] = []
        deletes: list[WriteItem] = []
        entries: list[WriteItem] = []
        for item in items:
            problem = self._check(item)
            if problem:
                results[item.ref] = WriteResult(item.ref, REJECTED, self._target_ref(item),
                                                "InvalidParam", problem)
            elif item.document == DICTIONARY:
                entries.append(item)
            elif item.action == "delete":
                deletes.append(item)
            else:
                saves.append(item)

        save_batches = _chunks(saves, self.settings.save_batch)
        dict_chunks = _chunks(entries, self.settings.dictionary_batch)
        # Dictionary entries ride along with vouchers (MISA creates them first); chunks beyond
        # the voucher batches go first through save_dictionary so they exist before any voucher.
        riding = dict_chunks[:len(save_batches)]
        for chunk in dict_chunks[len(save_batches):]:
            self._send(chunk, "save_dictionary", results)
        for index, batch in enumerate(save_batches):
            ride = riding[index] if index < len(riding) else []
            self._send(list(ride) + list(batch), "save", results)
        for batch in _chunks(deletes, self.settings.save_batch):
            self._send(batch, "delete", results)
        return [results[item.ref] for item in items]

    def _check(self, item: WriteItem) -> str | None:
        if item.document not in self.catalogue.documents:
            return f"MISA has no document {item.document!r}; use 'voucher' or 'dictionary'"
        if item.action not in self.catalogue.documents[item.document].actions:
            return f"action {item.action!r} is not supported for MISA {item.document}"
        payload = item.payload or {}
        if item.document == VOUCHER:
            missing = [f for f in ("voucher_type", "org_refid") if not payload.get(f)]
            if missing:
                return f"voucher payload lacks {', '.join(missing)}; set them in the route's fields"
        elif not payload.get("dictionary_type"):
            return "dictionary payload lacks dictionary_type; set it in the route's fields"
        return None

    @staticmethod
    def _target_ref(item: WriteItem) -> str | None:
        if item.document == DICTIONARY:
            return dictionary_ref(item.payload or {})
        return (item.payload or {}).get("org_refid") or None

    @staticmethod
    def _strip(item: WriteItem) -> dict[str, Any]:
        # The connector owns the credentials fields; a mapping cannot override them.
        payload = {k: v for k, v in item.payload.items() if k not in ("app_id", "org_company_code")}
        if item.document == DICTIONARY:
            # MISA matches entries by code: send the code as it is read back and polled for
            # (hexaflow.text), so " KH01" and "KH01" never become two entries.
            code_field = _code_field(payload)
            if code_field and code_field in payload:
                payload[code_field] = canonical_text(code_field, payload[code_field])
        return payload

    def _body_for(self, batch: Sequence[WriteItem], function: str) -> dict[str, Any]:
        if function == "delete":
            return {"voucher": [{"voucher_type": i.payload.get("voucher_type"),
                                 "org_refid": i.payload.get("org_refid")} for i in batch]}
        entries = [self._strip(i) for i in batch if i.document == DICTIONARY]
        if function == "save_dictionary":
            return {"dictionary": entries}
        vouchers = [self._strip(i) for i in batch if i.document == VOUCHER]
        body: dict[str, Any] = {"voucher": vouchers, "dictionary": entries}
        references = [ref for voucher in vouchers for ref in _references(voucher)]
        if references:
            body["reference"] = references
        return body

    def _send(self, batch: Sequence[WriteItem], function: str,
              results: dict[str, WriteResult]) -> None:
        body = {**self.client.base_body(), **self._body_for(batch, function)}
        method = "DELETE" if function == "delete" else "POST"
        try:
            envelope = self.client.call(function, body, method=method)
        except MisaAuthError:
            raise                                   # nothing can work: tell the user now
        except MisaTokenError as exc:
            raise MisaAuthError(exc.code, exc.misa_message, str(exc)) from None
        except MisaTransportError as exc:
            for item in batch:
                results[item.ref] = WriteResult(item.ref, FAILED, self._target_ref(item),
                                                exc.code, exc.misa_message)
            return
        if envelope.success:
            for item in batch:
                results[item.ref] = WriteResult(item.ref, QUEUED, self._target_ref(item))
            return
        if envelope.error_code in AUTH_CODES:
            raise MisaAuthError(envelope.error_code, envelope.error_message,
                                self.client.connect_hint(envelope.error_code, ""))
        if len(batch) > 1:
            # MISA names no item when it refuses a call; halve until the culprit stands alone.
            half = len(batch) // 2
            for part in (batch[:half], batch[half:]):
                dictionary_only = all(i.document == DICTIONARY for i in part)
                self._send(part, "save_dictionary" if function == "save" and dictionary_only
                           else function, results)
            return
        item = batch[0]
        status = CONFLICT if envelope.error_code == "IsCreatedVoucher" else REJECTED
        results[item.ref] = WriteResult(item.ref, status, self._target_ref(item),
                                        envelope.error_code, envelope.error_message)

    # -- async results ----------------------------------------------------------------
    def poll(self, target_refs: Iterable[str]) -> list[AsyncResult]:
        """Latest known outcome per ref, from get_call_back_detail_error (and get_dictionary
        for dictionary refs). Refs with nothing known yet are left out."""
        wanted = set(target_refs)
        vouchers = {r for r in wanted if not r.startswith("dictionary:")}
        results: list[AsyncResult] = []
        if vouchers:
            results.extend(self._poll_vouchers(vouchers))
        dictionary_refs = wanted - vouchers
        if dictionary_refs:
            results.extend(self._poll_dictionary(dictionary_refs))
        return results

    def _log_window(self, hours: int) -> dict[str, Any]:
        """The body of a get_call_back_detail_error call over the last ``hours``."""
        now = _vn_now()
        return {**self.client.base_body(company=False),
                "from_date": (now - timedelta(hours=hours)).isoformat(),
                "to_date": (now + timedelta(hours=1)).isoformat()}

    def _poll_vouchers(self, refs: set[str], hours: int | None = None) -> list[AsyncResult]:
        body = self._log_window(hours or self.settings.poll_lookback_h)
        latest: dict[str, AsyncResult] = {}
        take = min(self.settings.page_size, 100)
        skip = 0
        while True:
            envelope = self.client.call("get_call_back_detail_error",
                                        {**body, "skip": skip, "take": take})
            envelope.raise_for_error()
            rows = envelope.data if isinstance(envelope.data, list) else []
            # Rows come oldest first, so a later row for the same ref supersedes an earlier one.
            for row in rows:
                if not isinstance(row, Mapping) or row.get("org_refid") not in refs:
                    continue
                data_type = int(row.get("data_type") or 1)
                # Data type 22 (posted) comes as a callback's object, the others as a list.
                data: Any = [row]
                if data_type == 22:
                    data = {"voucher": [row], "custom_param": {"ModelState": row.get("model_state")}}
                for result in results_from_data(data_type, data):
                    latest[result.target_ref] = result
            if len(rows) < take:
                break
            skip += take
        return list(latest.values())

    # -- a lost state store (docs/state.md) -------------------------------------------
    def written_before(self) -> bool:
        """Whether MISA's callback log holds a result of this app's writes in the last
        MISA_ADOPT_LOOKBACK_D days: one call of one row. (How far back MISA keeps that log is
        not documented: hence the setting.)"""
        body = self._log_window(self.settings.adopt_lookback_d * 24)
        envelope = self.client.call("get_call_back_detail_error", {**body, "skip": 0, "take": 1})
        envelope.raise_for_error()
        return isinstance(envelope.data, list) and len(envelope.data) > 0

    def target_ref(self, item: WriteItem) -> str | None:
        return self._target_ref(item)

    def held(self, target_refs: Iterable[str]) -> dict[str, str]:
        """Vouchers from the callback log over MISA_ADOPT_LOOKBACK_D days, dictionary entries
        from the dictionary (present: accepted)."""
        wanted = set(target_refs)
        vouchers = {r for r in wanted if not r.startswith("dictionary:")}
        results = self._poll_vouchers(vouchers, self.settings.adopt_lookback_d * 24) \
            if vouchers else []
        results += self._poll_dictionary(wanted - vouchers)
        return {r.target_ref: r.status for r in results}

    def _poll_dictionary(self, refs: set[str]) -> list[AsyncResult]:
        # One read per dictionary type, however many refs ask about it.
        wanted: dict[int, dict[str, str]] = {}
        for ref in refs:
            parsed = _parse_dictionary_ref(ref)
            if parsed:
                wanted.setdefault(parsed[0], {})[parsed[1]] = ref
        results: list[AsyncResult] = []
        for push_type, codes in wanted.items():
            data_type, code_field = PUSH_TYPES[push_type]
            found = self._codes(data_type, code_field)
            results.extend(AsyncResult(ref, ACCEPTED) for code, ref in codes.items()
                           if code in found)
        return results

    def _codes(self, data_type: int, code_field: str) -> set[str]:
        resource = {v: k for k, v in DICTIONARY_RESOURCES.items()}[data_type]
        return {str(r.get(code_field)) for page in self.read(resource, {}) for r in page.records}

    # -- what the company holds (hexaflow check) ----------------------------------------
    def references(self, kind: str, codes: Iterable[str]) -> dict[str, str | None] | None:
        """Kinds: ``account`` (chart of accounts: missing, inactive, or a parent account, which
        takes no postings), ``item``, ``stock``, ``bank_account`` (missing or inactive)."""
        if kind not in REFERENCE_KINDS:
            return None
        resource, code_field, what = REFERENCE_KINDS[kind]
        held = {str(canonical_text(code_field, r.get(code_field))): r
                for page in self.read(resource, {}) for r in page.records}
        return {code: _reference_problem(kind, held, str(canonical_text(code_field, code)), what)
                for code in codes}

    # -- callbacks --------------------------------------------------------------------
    def receive(self, raw_body: bytes, headers: Mapping[str, str]) -> Received:
        """A MISA callback: verified with MISA_CALLBACK_KEY (default the app id), checked to be
        for MISA_APP_ID and MISA_ORG_COMPANY_CODE, answered in MISA's reply shape. Its results
        are applied by the engine like polled ones, except generated and deleted, which wait
        for :meth:`poll` to confirm them; its digest lets the engine refuse replays."""
        try:
            callback = parse_callback(raw_body, self.settings.signing_key,
                                      app_id=self.settings.app_id,
                                      org_company_code=self.settings.org_company_code)
        except CallbackError as exc:
            # The message names what is wrong (never the key); 401 marks a forged one.
            status = 401 if isinstance(exc, CallbackSignatureError) else 400
            return Received(status, {"Success": False, "ErrorCode": "InvalidParam",
                                     "ErrorMessage": str(exc)})
        results = [r for r in callback.results if r.status not in CONFIRM_BY_POLL]
        to_confirm = [r for r in callback.results if r.status in CONFIRM_BY_POLL]
        return Received(200, {"Success": True}, results=results, to_confirm=to_confirm,
                        digest=callback.digest)

    def exists(self, document: str, key: str) -> bool | None:
        """Dictionary entries can be looked up by the key a flow gives them (``dictionary_key``:
        a bare code is a customer, ``<type>:<code>`` another dictionary type); vouchers cannot,
        MISA has no voucher listing."""
        if document != DICTIONARY:
            return None
        parsed = parse_dictionary_key(key)
        if parsed is None:
            return None
        data_type, code_field = PUSH_TYPES[parsed[0]]
        return parsed[1] in self._codes(data_type, code_field)

    def close(self) -> None:
        self.client.close()


# hexaflow check's kinds -> (resource, code field, what MISA calls the list).
REFERENCE_KINDS = {"account": ("accounts", "account_number", "the chart of accounts"),
                   "item": ("items", "inventory_item_code", "the inventory items"),
                   "stock": ("stocks", "stock_code", "the warehouses"),
                   "bank_account": ("bank_accounts", "bank_account_number",
                                    "the company's bank accounts")}


def _reference_problem(kind: str, held: Mapping[str, Mapping[str, Any]], code: str,
                       what: str) -> str | None:
    entry = held.get(code)
    if entry is None:
        return f"is not in {what}"
    if entry.get("inactive"):
        return "is inactive (ngừng theo dõi) in MISA"
    if kind == "account":
        # A parent account takes no postings; its sub-accounts are the chart's numbers that
        # extend it (Vietnamese numbering), which is also how MISA lists them.
        subs = sorted(n for n in held if n != code and n.startswith(code))
        if entry.get("is_parent") or subs:
            shown = ", ".join(subs[:5]) + (", …" if len(subs) > 5 else "")
            return f"has sub-accounts ({shown}) and takes no postings" if subs \
                else "is a parent account and takes no postings"
    return None


# A flow's key for a dictionary entry: a bare code is an account object (customer), the entry
# most flows ensure; other types are ``<push dictionary_type>:<code>``. One format, so the key an
# order's ensure renders and the customers flow's key name the same entry, and exists() reads it.
CUSTOMER_TYPE = 1


def _references(voucher: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents ``voucher`` refers to (a flow's ``reference`` field, taken off the voucher):
    save's body-level ``reference`` items, each naming the voucher and the document it refers to
    (reference §3.3 "Linking related documents"; AMIS shows them under "Tham chiếu")."""
    refers = voucher.pop("reference", None) or []
    return [{"org_refid": voucher.get("org_refid"), "org_refno": voucher.get("org_refno"),
             "org_reftype": voucher.get("org_reftype") or voucher.get("reftype"), **refer}
            for refer in refers if isinstance(refer, dict)]


def dictionary_key(push_type: int, code: str) -> str:
    """The flow key of a dictionary entry (the inverse of :func:`parse_dictionary_key`)."""
    return code if push_type == CUSTOMER_TYPE else f"{push_type}:{code}"


def parse_dictionary_key(key: str) -> tuple[int, str] | None:
    """(push dictionary_type, canonical code) from a flow key or a target ref
    (``dictionary:<type>:<code>``); None for a type hexaflow does not read back. A code that
    itself holds a colon is read as ``<type>:<code>`` only when what precedes it is a type."""
    rest = key[len("dictionary:"):] if key.startswith("dictionary:") else key
    head, sep, tail = rest.partition(":")
    push_type, code = CUSTOMER_TYPE, rest
    if sep and head.isdigit():
        push_type, code = int(head), tail
    elif key.startswith("dictionary:"):
        return None                    # a target ref always names its type
    if push_type not in PUSH_TYPES or not code:
        return None
    return push_type, canonical_text(PUSH_TYPES[push_type][1], code)


def _parse_dictionary_ref(ref: str) -> tuple[int, str] | None:
    """(push dictionary_type, code) from a target ref ``dictionary:<type>:<code>``."""
    return parse_dictionary_key(ref) if ref.startswith("dictionary:") else None
