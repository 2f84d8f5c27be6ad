"""MISA's asynchronous results: signing, verifying and reading callback bodies.

MISA POSTs ``{success, error_code, error_message, signature, data_type, org_company_code, app_id,
data}`` to the partner's callback URL, where ``data`` is a JSON *string* and ``signature`` the hex
HMAC-SHA256 of that raw string. Working integrations key the HMAC with ``app_id``; one MISA page
speaks of a "public key" instead, so the key is a parameter (``MISA_CALLBACK_KEY``).

The signature covers ``data`` only, and the app id travels in clear in every callback: so a
genuine callback is also checked to be for our ``app_id`` and ``org_company_code``, and it is
known by the digest of its signed ``data`` (whoever re-sends it can change everything else,
``data_type`` included), which lets a receiver refuse replays.

Everything here is pure (no I/O) so that a receiver (``hexaflow serve``, a test) only has to read
the body, call :func:`handle_callback`, store the results and answer with the reply.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from hexaflow.errors import HexaflowError
from hexaflow.connector import (ACCEPTED, CONFLICT, DELETED, GENERATED, MAX_DELIVERY_DEPTH,
                                POSTED, REJECTED, AsyncResult, JSONTooDeep)

from .envelope import decode_nested, loads

# data_type values observed in callbacks (reference §2.8).
SAVE_PROCESSED = 1
DELETE_PROCESSED = 2
VOUCHER_GENERATED = 18
VOUCHER_CHANGED = 22
MODEL_STATE_POSTED = 7


class CallbackError(HexaflowError, ValueError):
    """A callback body that must not be trusted or cannot be read; nothing in it was applied."""


class CallbackSignatureError(CallbackError):
    """The callback's signature is missing or was not made with our key (forged)."""


@dataclass(frozen=True)
class Callback:
    """A genuine callback for us: its results and the sha256 of its signed ``data`` string."""
    results: list[AsyncResult]
    digest: str


def sign(data: str, key: str) -> str:
    return hmac.new(key.encode("utf-8"), data.encode("utf-8"), hashlib.sha256).hexdigest()


def build_callback(data_type: int, data: Any, *, app_id: str, org_company_code: str,
                   key: str) -> dict[str, Any]:
    """A callback body as MISA sends it (used by the sandbox; handy for receiver tests)."""
    raw = json.dumps(data, ensure_ascii=False, default=str)
    return {"success": True, "error_code": None, "error_message": None,
            "signature": sign(raw, key), "data_type": data_type,
            "org_company_code": org_company_code, "app_id": app_id, "data": raw}


def _get(body: Mapping[str, Any], name: str) -> Any:
    # MISA CukCuk documents the same body in PascalCase; accept both spellings.
    if name in body:
        return body[name]
    pascal = "".join(part.capitalize() for part in name.split("_"))
    for key, value in body.items():
        if key.lower() in (name, pascal.lower()):
            return value
    return None


def verify(body: Mapping[str, Any], key: str) -> str:
    """The raw ``data`` string of a callback whose signature matches; CallbackError otherwise."""
    raw = _get(body, "data")
    signature = _get(body, "signature")
    if not isinstance(raw, str):
        raise CallbackError("callback has no 'data' string to verify")
    if not isinstance(signature, str) or not signature:
        raise CallbackSignatureError("callback has no signature; MISA signs every callback "
                                     "(with MISA_CALLBACK_KEY, or MISA_APP_ID when that is not set)")
    if not hmac.compare_digest(sign(raw, key), signature.strip().lower()):
        raise CallbackSignatureError("callback signature does not match (check MISA_CALLBACK_KEY; "
                                     "when it is not set, the key is MISA_APP_ID)")
    return raw


def check_origin(body: Mapping[str, Any], app_id: str, org_company_code: str) -> None:
    """CallbackError unless the callback names our application and company."""
    for field, ours, variable, what in (
            ("app_id", app_id, "MISA_APP_ID", "application"),
            ("org_company_code", org_company_code, "MISA_ORG_COMPANY_CODE", "company")):
        theirs = str(_get(body, field) or "").strip()
        # Constant time: by default the app id is also the signing key.
        if not ours or not hmac.compare_digest(theirs.encode(), ours.strip().encode()):
            raise CallbackError(f"callback is for another {what}: its {field} is not "
                                f"{variable}; nothing was applied (check {variable} and the "
                                f"callback URL registered with MISA)")


def _item_result(item: Mapping[str, Any], ok_status: str) -> AsyncResult | None:
    ref = _get(item, "org_refid")
    if not ref:
        return None
    if _get(item, "success") in (True, "true", "True", 1):
        return AsyncResult(str(ref), ok_status)
    code = _get(item, "error_code") or "Exception"
    message = _get(item, "error_message") or _get(item, "error_call_back_message") or ""
    status = CONFLICT if code == "IsCreatedVoucher" else REJECTED
    return AsyncResult(str(ref), status, code=str(code), message=str(message))


def results_from_data(data_type: int, data: Any, model_state: Any = None) -> list[AsyncResult]:
    """Async results from one callback's decoded ``data`` (also used for polled rows)."""
    if data_type == VOUCHER_CHANGED:
        return _changed_results(data)
    items: Iterable[Any] = data if isinstance(data, list) else [data]
    ok = {SAVE_PROCESSED: ACCEPTED, DELETE_PROCESSED: DELETED,
          VOUCHER_GENERATED: GENERATED}.get(data_type)
    if ok is None:
        return []     # data types we do not track (dictionary, payment status, ...)
    results = []
    for item in items:
        if isinstance(item, Mapping):
            result = _item_result(item, ok)
            if result is not None:
                results.append(result)
    return results


def _changed_results(data: Any) -> list[AsyncResult]:
    if not isinstance(data, Mapping):
        return []
    param = _get(data, "custom_param") or {}
    if isinstance(param, str):
        param = decode_nested(param)    # not JSON (or nested too deeply): not a posting
    state = _get(param, "model_state") if isinstance(param, Mapping) else None
    if state is None or int(state) != MODEL_STATE_POSTED:
        return []     # add/edit/unpost/delete in AMIS: not a lifecycle step we report
    vouchers = _get(data, "voucher") or []
    return [AsyncResult(str(_get(v, "org_refid")), POSTED) for v in vouchers
            if isinstance(v, Mapping) and _get(v, "org_refid")]


def parse_callback(raw_body: bytes, key: str, *, app_id: str,
                   org_company_code: str) -> Callback:
    """Verify a callback body (signature, then our app id and company) and read it;
    CallbackError when it is not genuine or not ours."""
    try:
        body = loads(raw_body, MAX_DELIVERY_DEPTH)
    except JSONTooDeep as exc:
        raise CallbackError(f"callback body refused: {exc}") from None
    except ValueError:
        raise CallbackError("callback body is not JSON") from None
    if not isinstance(body, Mapping):
        raise CallbackError("callback body is not a JSON object")
    raw = verify(body, key)
    check_origin(body, app_id, org_company_code)
    try:
        data = loads(raw, MAX_DELIVERY_DEPTH)
    except JSONTooDeep as exc:
        raise CallbackError(f"callback 'data' refused: {exc}") from None
    except ValueError:
        raise CallbackError("callback 'data' is not JSON") from None
    try:
        data_type = int(_get(body, "data_type"))
    except (TypeError, ValueError):
        raise CallbackError("callback has no numeric data_type") from None
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    return Callback(results_from_data(data_type, data), digest)


def handle_callback(raw_body: bytes, key: str, *, app_id: str,
                    org_company_code: str) -> tuple[int, dict[str, Any], list[AsyncResult]]:
    """(HTTP status, JSON reply, results) for a receiver: MISA's reply shape either way. The
    receiver must still refuse replays (``parse_callback``'s digest) and confirm generated
    and deleted results with ``MisaConnector.poll`` before applying them."""
    try:
        results = parse_callback(raw_body, key, app_id=app_id,
                                 org_company_code=org_company_code).results
    except CallbackError as exc:
        return 400, {"Success": False, "ErrorCode": "InvalidParam", "ErrorMessage": str(exc)}, []
    return 200, {"Success": True}, results
