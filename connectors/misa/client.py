"""The MISA AMIS client: configuration, the access token, and one ``call`` for every function.

Two gateways exist (reference §1). ``classic`` (``https://actapp.misa.vn``, verified by six
codebases) connects at ``/api/oauth/actopen/connect`` and calls ``/apir/sync/actopen/<fn>`` with
``app_id`` in every body. ``gateway`` (``https://developer.misa.vn/apis``, unverified) takes a
token at ``/amiskt/v1/token`` with a ``ClientID`` header and calls ``/amiskt/v1/<fn>`` without
``app_id``. ``MISA_AUTH_STYLE`` picks one.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from hexaflow.connector import ConfigError
from hexaflow.http import HttpClient, Limiter, RetriesExhausted, RetryPolicy, rate_limiter
from hexaflow.timeutil import get_zone, parse_datetime

from .envelope import Envelope, loads, parse_envelope, to_jsonable
from .errors import (MisaAuthError, MisaTokenError,
                     MisaTransportError, error_for)

log = logging.getLogger("hexaflow.misa")

CLASSIC = "classic"
GATEWAY = "gateway"
DEFAULT_BASE_URLS = {CLASSIC: "https://actapp.misa.vn", GATEWAY: "https://developer.misa.vn/apis"}
TOKEN_LIFETIME_S = 12 * 3600      # documented lifetime; also a cap on what a server claims
TICKS_AT_EPOCH = 621355968000000000   # .NET DateTime ticks at 1970-01-01


def _int(config: Mapping[str, str], name: str, default: int) -> int:
    value = config.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None


@dataclass(frozen=True)
class MisaSettings:
    base_url: str
    app_id: str
    access_code: str
    org_company_code: str
    auth_style: str = CLASSIC
    client_id: str = ""
    callback_key: str = ""            # HMAC key of callbacks; app_id when empty
    page_size: int = 100
    save_batch: int = 100
    dictionary_batch: int = 200
    token_margin_s: int = 600
    poll_lookback_h: int = 72
    adopt_lookback_d: int = 365       # how far back a lost state store is looked for and adopted
    max_calls_per_s: int = 0          # 0: no client-side limiter (MISA documents no quota)
    timeout_s: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, str] | None = None) -> "MisaSettings":
        """Settings from ``config`` only (the engine fills it from the environment or a config
        file): a connector never reads the process environment itself."""
        merged = {k: v for k, v in (config or {}).items() if v not in (None, "")}
        style = (merged.get("MISA_AUTH_STYLE") or CLASSIC).strip().lower()
        if style not in (CLASSIC, GATEWAY):
            raise ConfigError(f"MISA_AUTH_STYLE must be '{CLASSIC}' or '{GATEWAY}', got {style!r}")
        required = ["MISA_ACCESS_CODE", "MISA_ORG_COMPANY_CODE"]
        required.append("MISA_APP_ID" if style == CLASSIC else "MISA_CLIENT_ID")
        missing = [name for name in required if not merged.get(name)]
        if missing:
            raise ConfigError(f"MISA AMIS is not configured: set {', '.join(missing)}")
        return cls(
            base_url=merged.get("MISA_BASE_URL") or DEFAULT_BASE_URLS[style],
            app_id=merged.get("MISA_APP_ID", ""),
            access_code=merged["MISA_ACCESS_CODE"],
            org_company_code=merged["MISA_ORG_COMPANY_CODE"],
            auth_style=style,
            client_id=merged.get("MISA_CLIENT_ID", ""),
            callback_key=merged.get("MISA_CALLBACK_KEY", ""),
            page_size=min(_int(merged, "MISA_PAGE_SIZE", 100), 1000),
            save_batch=_int(merged, "MISA_SAVE_BATCH", 100),
            dictionary_batch=_int(merged, "MISA_DICTIONARY_BATCH", 200),
            token_margin_s=_int(merged, "MISA_TOKEN_MARGIN_S", 600),
            poll_lookback_h=_int(merged, "MISA_POLL_LOOKBACK_H", 72),
            adopt_lookback_d=_int(merged, "MISA_ADOPT_LOOKBACK_D", 365),
            max_calls_per_s=_int(merged, "MISA_MAX_CALLS_PER_S", 0),
            timeout_s=_int(merged, "MISA_TIMEOUT_S", 30),
        )

    @property
    def signing_key(self) -> str:
        return self.callback_key or self.app_id

    def __repr__(self) -> str:   # dataclass repr would print the access code
        return (f"MisaSettings(base_url={self.base_url!r}, auth_style={self.auth_style!r}, "
                f"org_company_code={self.org_company_code!r})")


def token_expiry(data: Mapping[str, Any], now: float) -> float:
    """Epoch seconds when a token expires, from ``expired_time`` or ``expired_time_ticks``.

    MISA's timestamps often carry no offset; those are Vietnam time. Whatever the server says,
    a token is never kept beyond the documented 12 hours.
    """
    cap = now + TOKEN_LIFETIME_S
    text = data.get("expired_time")
    if text:
        try:
            dt = parse_datetime(str(text)) if _has_offset(str(text)) else \
                datetime.fromisoformat(str(text)[:26]).replace(tzinfo=get_zone("Asia/Ho_Chi_Minh"))
            return min(cap, dt.timestamp())
        except ValueError:
            pass
    ticks = data.get("expired_time_ticks")
    if ticks:
        try:
            return min(cap, (int(ticks) - TICKS_AT_EPOCH) / 1e7)
        except (TypeError, ValueError):
            pass
    return cap


def _has_offset(text: str) -> bool:
    tail = text[10:]
    return text.endswith(("Z", "z")) or "+" in tail or tail.count("-") > 0


class MisaClient:
    """One tenant's connection: holds the token, reconnects once on a token error."""

    def __init__(self, settings: MisaSettings, *, retry: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self._clock = clock
        limiter: Limiter | None = None
        if settings.max_calls_per_s > 0:
            rate = settings.max_calls_per_s
            limiter = rate_limiter("misa", settings.org_company_code, rate + 2, float(rate))
        self.http = HttpClient(settings.base_url, system="MISA AMIS",
                               headers={"Content-Type": "application/json"},
                               timeout=float(settings.timeout_s), retry=retry or RetryPolicy(),
                               limiter=limiter)
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.connects = 0            # how many tokens this client obtained (run summaries, tests)

    # -- paths and bodies -------------------------------------------------------------
    def _function_path(self, function: str) -> str:
        if self.settings.auth_style == GATEWAY:
            return f"/amiskt/v1/{function}"
        return f"/apir/sync/actopen/{function}"

    def _auth_headers(self) -> dict[str, str]:
        headers = {"X-MISA-AccessToken": self._token or ""}
        if self.settings.auth_style == GATEWAY:
            headers["ClientID"] = self.settings.client_id
        return headers

    def base_body(self, *, company: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.settings.auth_style == CLASSIC:
            body["app_id"] = self.settings.app_id
        if company:
            body["org_company_code"] = self.settings.org_company_code
        return body

    def redact(self, text: str | None) -> str:
        """MISA echoes parameters in messages; never let a secret through."""
        text = text or ""
        for secret in (self.settings.access_code, self._token):
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    # -- token ------------------------------------------------------------------------
    def _post_json(self, path: str, body: Any, method: str = "POST",
                   headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        import httpx    # here, not at the top: loading the connector's catalogue needs no httpx
        try:
            response = self.http.request(method, path, json=to_jsonable(body), headers=headers)
        except RetriesExhausted as exc:
            raise MisaTransportError("Exception", str(exc)) from None
        except httpx.HTTPError as exc:
            raise MisaTransportError("Exception", f"{type(exc).__name__} calling {path}") from None
        try:
            payload = loads(response.content) if response.content else None
        except ValueError:
            payload = None
        return response.status_code, payload

    def connect(self) -> None:
        """Get a new token; fail fast with the variable to fix when MISA refuses."""
        s = self.settings
        if s.auth_style == GATEWAY:
            path, body = "/amiskt/v1/token", {"access_code": s.access_code,
                                              "org_company_code": s.org_company_code}
            headers = {"ClientID": s.client_id}
        else:
            path, body = "/api/oauth/actopen/connect", {
                "app_id": s.app_id, "access_code": s.access_code,
                "org_company_code": s.org_company_code}
            headers = None
        status, payload = self._post_json(path, body, headers=headers)
        if status == 401 or status == 403:
            raise MisaAuthError("InvalidAppID", f"HTTP {status} on connect",
                                hint=self.connect_hint("InvalidAppID", "")
                                + f", and that MISA_BASE_URL ({s.base_url}) is MISA AMIS")
        try:
            if payload is None or status >= 400:
                raise MisaTransportError("Exception", f"HTTP {status} on connect")
            envelope = parse_envelope(payload)
        except MisaTransportError as exc:
            raise MisaTransportError(exc.code, exc.misa_message,
                                     f"Check MISA_BASE_URL ({s.base_url})") from None
        if not envelope.success:
            message = self.redact(envelope.error_message)
            hint = self.connect_hint(envelope.error_code or "", message)
            err = error_for(envelope.error_code, message, hint)
            if not isinstance(err, MisaAuthError):
                err = MisaAuthError(envelope.error_code, message, hint)
            raise err
        data = envelope.data if isinstance(envelope.data, Mapping) else {}
        token = data.get("access_token")
        if not token:
            raise MisaTransportError("Exception", "connect answered without an access_token")
        now = self._clock()
        self._token = str(token)
        expires = token_expiry(data, now)
        # A margin of 10 % of the lifetime at most, so short-lived tokens are still used.
        margin = min(self.settings.token_margin_s, max(0.0, (expires - now) * 0.1))
        self._expires_at = expires - margin
        self.connects += 1
        log.info("MISA AMIS: connected (%s gateway), token valid for %.0fs",
                 self.settings.auth_style, expires - now)

    def connect_hint(self, code: str, message: str) -> str:
        s = self.settings
        if code == "InvalidAppID":
            return ("Check MISA_APP_ID (issued by MISA to the partner application)"
                    if s.auth_style == CLASSIC else "Check MISA_CLIENT_ID")
        if code == "InvalidAccessToken":
            return "Check MISA_ACCESS_CODE (generated in AMIS: Thiết lập → Kết nối ứng dụng)"
        if code == "InvalidParam":
            lowered = message.lower()
            if "org_company_code" in lowered:
                return "Check MISA_ORG_COMPANY_CODE"
            if "access_code" in lowered:
                return "Check MISA_ACCESS_CODE"
            return "Check MISA_ACCESS_CODE and MISA_ORG_COMPANY_CODE"
        if code == "AppIDDisconnect":
            return "The AMIS admin disconnected this app; reconnect it in AMIS and check MISA_ACCESS_CODE"
        if code == "DBAmisNotConnectDBACT":
            return "The AMIS company has no accounting dataset connected (set it up in AMIS)"
        return f"Check MISA_BASE_URL ({s.base_url}) and the MISA_* settings"

    def _ensure_token(self) -> None:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self.connect()

    # -- calls ------------------------------------------------------------------------
    def call(self, function: str, body: Mapping[str, Any], *, method: str = "POST") -> Envelope:
        """Call ``function``; return its envelope (``Success`` may be false, codes kept).

        Token errors are handled here: one reconnect, one retry. Everything else is left to
        the caller, who knows whether a failure concerns one item or the whole call.
        """
        for attempt in (1, 2):
            self._ensure_token()
            status, payload = self._post_json(self._function_path(function), body, method,
                                              headers=self._auth_headers())
            if status == 401:
                envelope = Envelope(False, "InvalidToken", "HTTP 401", None, None)
            elif payload is None or status >= 400:
                raise MisaTransportError("Exception", f"HTTP {status} from {function}",
                                         f"Check MISA_BASE_URL ({self.settings.base_url})")
            else:
                envelope = parse_envelope(payload)
            if envelope.success or envelope.error_code not in ("ExpiredToken", "InvalidToken"):
                if envelope.error_message:
                    envelope = Envelope(envelope.success, envelope.error_code,
                                        self.redact(envelope.error_message), envelope.data,
                                        envelope.custom_data)
                return envelope
            if attempt == 1:
                log.info("MISA AMIS: %s on %s; reconnecting once", envelope.error_code, function)
                with self._lock:
                    self._token = None
        raise MisaTokenError(envelope.error_code, self.redact(envelope.error_message),
                             "A fresh token was refused too; check MISA_APP_ID and MISA_ACCESS_CODE")

    def close(self) -> None:
        self.http.close()
