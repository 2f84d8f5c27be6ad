"""MISA's response envelope: ``{Success, ErrorCode, ErrorMessage, Data, CustomData}``.

``Data`` and ``CustomData`` are often JSON *strings* holding the real value, so both are decoded a
second time when they look like JSON. Floats are parsed as Decimal so money never passes through
binary floating point.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Mapping

from hexaflow.connector import loads_json
from hexaflow.money import to_json_number

from .errors import MisaTransportError, error_for


def loads(text: str | bytes, max_depth: int | None = None) -> Any:
    return loads_json(text, max_depth)


def decode_nested(value: Any) -> Any:
    """A value that may be a JSON string (``"[{...}]"``) as the JSON it holds."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{"):
            try:
                return loads(stripped)
            except ValueError:
                return value
    return value


@dataclass(frozen=True)
class Envelope:
    success: bool
    error_code: str | None
    error_message: str | None
    data: Any
    custom_data: Any

    def raise_for_error(self, hint: str = "") -> "Envelope":
        if not self.success:
            raise error_for(self.error_code, self.error_message, hint)
        return self

    def custom(self, name: str) -> Any:
        if isinstance(self.custom_data, Mapping):
            return self.custom_data.get(name)
        return None


def _field(body: Mapping[str, Any], name: str) -> Any:
    # MISA writes PascalCase; some gateways answer camelCase.
    if name in body:
        return body[name]
    return body.get(name[0].lower() + name[1:])


def parse_envelope(body: Any) -> Envelope:
    if not isinstance(body, Mapping) or ("Success" not in body and "success" not in body):
        raise MisaTransportError("Exception", "answer is not a MISA envelope")
    return Envelope(
        success=bool(_field(body, "Success")),
        error_code=_field(body, "ErrorCode") or None,
        error_message=_field(body, "ErrorMessage") or None,
        data=decode_nested(_field(body, "Data")),
        custom_data=decode_nested(_field(body, "CustomData")),
    )


def to_jsonable(value: Any) -> Any:
    """Payloads carry Decimal and datetimes; MISA wants plain JSON numbers and ISO text."""
    if isinstance(value, Decimal):
        return to_json_number(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
