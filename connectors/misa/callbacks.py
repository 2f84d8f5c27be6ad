"""MISA's asynchronous results: signing, verifying and reading callback bodies.

MISA POSTs ``{success, error_code, error_message, signature, data_type, org_company_code, app_id,
data}`` to the partner's callback URL, where ``data`` is a JSON *string* and ``signature`` the hex
HMAC-SHA256 of that raw string. Working integrations key the HMAC with ``app_id``; one MISA page
speaks of a "public key" instead, so the key is a parameter (``MISA_CALLBACK_KEY``).

Everything here is pure (no I/O) so that a receiver (``hexaflow serve``, a test) only has to read
the body, call :func:`handle_callback`, store the results and answer with the reply.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Iterable, Mapping

from hexaflow.connector import (ACCEPTED, CONFLICT, DELETED, GENERATED, POSTED, REJECTED,
                                AsyncResult)

from .envelope import loads

# data_type values observed in callbacks (reference §2.8).
SAVE_PROCESSED = 1
DELETE_PROCESSED = 2
VOUCHER_GENERATED = 18
VOUCHER_CHANGED = 22
MODEL_STATE_POSTED = 7


class CallbackError(ValueError):
    """A callback body that must not be trusted or cannot be read; nothing in it was applied."""


class CallbackSignatureError(CallbackError):
    """The callback's signature is missing or was not made with our key (forged)."""


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
        param = loads(param)
    state = _get(param, "model_state") if isinstance(param, Mapping) else None
    if state is None or int(state) != MODEL_STATE_POSTED:
        return []     # add/edit/unpost/delete in AMIS: not a lifecycle step we report
    vouchers = _get(data, "voucher") or []
    return [AsyncResult(str(_get(v, "org_refid")), POSTED) for v in vouchers
            if isinstance(v, Mapping) and _get(v, "org_refid")]


def parse_callback(raw_body: bytes, key: str) -> list[AsyncResult]:
    """Verify a callback body and return its results; CallbackError when it is not genuine."""
    try:
        body = loads(raw_body)
    except ValueError:
        raise CallbackError("callback body is not JSON") from None
    if not isinstance(body, Mapping):
        raise CallbackError("callback body is not a JSON object")
    raw = verify(body, key)
    try:
        data = loads(raw)
    except ValueError:
        raise CallbackError("callback 'data' is not JSON") from None
    try:
        data_type = int(_get(body, "data_type"))
    except (TypeError, ValueError):
        raise CallbackError("callback has no numeric data_type") from None
    return results_from_data(data_type, data)


def handle_callback(raw_body: bytes, key: str) -> tuple[int, dict[str, Any], list[AsyncResult]]:
    """(HTTP status, JSON reply, results) for a receiver: MISA's reply shape either way."""
    try:
        results = parse_callback(raw_body, key)
    except CallbackError as exc:
        return 400, {"Success": False, "ErrorCode": "InvalidParam", "ErrorMessage": str(exc)}, []
    return 200, {"Success": True}, results
