"""MISA's envelope error codes as exceptions.

MISA answers business failures with HTTP 200 and ``Success: false``; the code in ``ErrorCode``
decides what a caller can do about it (reconnect, fix configuration, report a conflict), so each
family gets its own class. MISA's code and message are kept verbatim on every instance; the
message is redacted by the client before it gets here, because MISA echoes parameters (an
access code included) in some messages.
"""
from __future__ import annotations

from hexaflow.connector import ConnectorError


class MisaError(ConnectorError):
    """A ``Success: false`` answer (or a failure to get any answer) from MISA."""

    def __init__(self, code: str | None, message: str | None, hint: str = ""):
        self.code = code or "Exception"
        self.misa_message = message or ""
        text = f"MISA {self.code}: {self.misa_message}".rstrip(": ")
        super().__init__(f"{text}. {hint}" if hint else text)


class MisaAuthError(MisaError):
    """Credentials or the connection setting are wrong; nothing will work until fixed."""


class MisaTokenError(MisaError):
    """``ExpiredToken`` / ``InvalidToken``: connect again and retry once."""


class MisaParamError(MisaError):
    """``InvalidParam``: the request itself is wrong (batch too large, bad field)."""


class MisaVoucherCreatedError(MisaError):
    """``IsCreatedVoucher``: the accountant already generated a voucher from this request."""


class MisaVoucherNotFoundError(MisaError):
    """``VoucherNotFound``: no request with that org_refid."""


class MisaTransportError(MisaError):
    """No usable answer: retries exhausted, a non-JSON body, an unexpected HTTP status."""


TOKEN_CODES = frozenset({"ExpiredToken", "InvalidToken"})
AUTH_CODES = frozenset({"InvalidAppID", "InvalidAccessToken", "AppIDDisconnect",
                        "DBAmisNotConnectDBACT"})

_BY_CODE: dict[str, type[MisaError]] = {
    "ExpiredToken": MisaTokenError,
    "InvalidToken": MisaTokenError,
    "InvalidAppID": MisaAuthError,
    "InvalidAccessToken": MisaAuthError,
    "AppIDDisconnect": MisaAuthError,
    "DBAmisNotConnectDBACT": MisaAuthError,
    "InvalidParam": MisaParamError,
    "IsCreatedVoucher": MisaVoucherCreatedError,
    "VoucherNotFound": MisaVoucherNotFoundError,
}


def error_for(code: str | None, message: str | None, hint: str = "") -> MisaError:
    """The typed exception for a MISA ``ErrorCode`` (unknown codes give a plain MisaError)."""
    return _BY_CODE.get(code or "", MisaError)(code, message, hint)
