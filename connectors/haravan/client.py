"""Haravan's HTTP client: settings, auth, the shop's call-limit bucket, and errors a user can act on.

All traffic goes through :class:`hexaflow.http.HttpClient` (one retry policy for every
connector). This module adds what is Haravan's own: the bearer token, the ``/com`` prefix, the
``X-Haravan-Api-Call-Limit`` header fed to the shared leaky bucket, and the meaning of 401/403.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Mapping

from hexaflow.errors import HexaflowError
from hexaflow.connector import ConfigError, ConnectorError
from hexaflow.http import HttpClient, RetryPolicy, rate_limiter
from hexaflow.money import to_json_number

from .normalise import loads, quirks

if TYPE_CHECKING:   # only in annotations; hexaflow.http imports it when a client is made
    import httpx

log = logging.getLogger("hexaflow.connectors.haravan")

DEFAULT_BASE_URL = "https://apis.haravan.com"


def _number(config: Mapping[str, str], name: str, default: float) -> float:
    raw = config.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _switch(config: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (config.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def _bucket_at_start(config: Mapping[str, str], default: bool) -> bool:
    raw = (config.get("HARAVAN_BUCKET_AT_START") or "").strip().lower()
    if not raw:
        return default
    if raw not in ("full", "empty"):
        raise ConfigError(f"HARAVAN_BUCKET_AT_START must be full or empty, got {raw!r}")
    return raw == "full"


@dataclass(frozen=True)
class HaravanSettings:
    base_url: str
    token: str = field(repr=False)             # never shown, even in a debug print
    webhook_secret: str | None = field(repr=False)
    page_size: int
    overlap_seconds: float
    calls_per_second: float
    timeout: float
    retry: RetryPolicy
    rate_limit: bool = True            # the client-side bucket; off only against a sandbox
    bucket_full_at_start: bool = True  # assume another client filled the shop's bucket

    @classmethod
    def from_config(cls, config: Mapping[str, str] | None) -> "HaravanSettings":
        """Values from the engine's config only (the engine fills it from the environment or a
        config file): a connector never reads the process environment itself, so one process
        can hold connectors of several tenants."""
        merged = {k: v for k, v in (config or {}).items() if v is not None}
        token = (merged.get("HARAVAN_TOKEN") or "").strip()
        if not token:
            raise ConfigError("HARAVAN_TOKEN is not set: create a private app token in Haravan "
                              "(Apps → Private apps) and put it in HARAVAN_TOKEN")
        api = quirks()["api"]
        return cls(
            base_url=(merged.get("HARAVAN_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            token=token,
            webhook_secret=merged.get("HARAVAN_WEBHOOK_SECRET") or None,
            page_size=int(_number(merged, "HARAVAN_PAGE_SIZE", api["page_size"])),
            overlap_seconds=_number(merged, "HARAVAN_OVERLAP_SECONDS", api["overlap_seconds"]),
            calls_per_second=_number(merged, "HARAVAN_CALLS_PER_SECOND",
                                     api["call_limit"]["leak_per_second"]),
            timeout=_number(merged, "HARAVAN_TIMEOUT_SECONDS", api["timeout_seconds"]),
            retry=RetryPolicy(
                max_attempts=int(_number(merged, "HARAVAN_MAX_ATTEMPTS", 6)),
                base_delay=_number(merged, "HARAVAN_RETRY_BASE_DELAY", 0.25)),
            rate_limit=_switch(merged, "HARAVAN_RATE_LIMIT", True),
            bucket_full_at_start=_bucket_at_start(
                merged, bool(api["call_limit"].get("full_at_start", True))),
        )

    @property
    def account(self) -> str:
        """The rate-limit key: one bucket per shop, and the token identifies the shop. Hashed so
        the token never appears in a key that could be logged."""
        return hashlib.sha256(f"{self.base_url}|{self.token}".encode()).hexdigest()[:16]


class HaravanHTTPError(HexaflowError):
    """A non-2xx answer that is not about credentials (404, 400, 422...)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def error_message(response: httpx.Response) -> str:
    """The error text of a response whatever shape Haravan used (undocumented, [UNK])."""
    try:
        body = loads(response.content)
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("errors", "error", "message"):
            if key in body:
                value = body[key]
                if isinstance(value, dict):
                    return "; ".join(
                        f"{field}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                        for field, msgs in value.items())
                if isinstance(value, list):
                    return "; ".join(map(str, value))
                return str(value)
    return str(body)[:500]


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as JSON numbers (whole amounts as ints, as Haravan accepts)."""
    if isinstance(value, Decimal):
        return to_json_number(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class HaravanClient:
    def __init__(self, settings: HaravanSettings):
        self.settings = settings
        call_limit = quirks()["api"]["call_limit"]
        self._limit_header = call_limit["header"]
        # One bucket per shop in this process. It starts full (by default): a new process
        # cannot know what `serve`, another run or another app left in the shop's bucket, and
        # the first answer's call-limit header replaces the guess (docs/connectors/haravan.md).
        self.limiter = rate_limiter("haravan", settings.account, int(call_limit["capacity"]),
                                    settings.calls_per_second,
                                    start_full=settings.bucket_full_at_start) \
            if settings.rate_limit else None
        self.http = HttpClient(
            settings.base_url + quirks()["api"]["path_prefix"], system="haravan",
            headers={"Authorization": f"Bearer {settings.token}",
                     "Accept": "application/json", "Content-Type": "application/json"},
            timeout=settings.timeout, retry=settings.retry, limiter=self.limiter,
            on_response=self._observe)

    def _observe(self, response: httpx.Response) -> None:
        value = response.headers.get(self._limit_header)
        if not value:
            return
        try:
            used, capacity = (int(part) for part in value.split("/", 1))
        except ValueError:
            log.debug("haravan: unreadable %s header %r", self._limit_header, value)
            return
        if self.limiter is not None:
            self.limiter.observe(used, capacity)

    def _check_auth(self, response: httpx.Response, scope: str) -> None:
        if response.status_code == 401:
            raise ConnectorError(
                f"Haravan refused the credentials (HTTP 401) at {self.settings.base_url}: check "
                "HARAVAN_TOKEN (a valid private app or OAuth token of this shop) and "
                "HARAVAN_BASE_URL")
        if response.status_code == 403:
            raise ConnectorError(
                f"Haravan denied access (HTTP 403): the token in HARAVAN_TOKEN lacks the scope "
                f"'{scope}'; add it to the private app's permissions and create a new token")

    def request(self, method: str, path: str, *, scope: str, params: Mapping[str, Any] | None = None,
                body: Any = None, idempotent: bool = True) -> tuple[int, Any]:
        """(status, parsed body) of a call; 401/403 raise ConnectorError, other statuses return."""
        response = self.http.request(method, path, params=params, json=jsonable(body),
                                     idempotent=idempotent)
        self._check_auth(response, scope)
        try:
            parsed = loads(response.content) if response.content else None
        except ValueError:
            parsed = None
        if response.status_code >= 400:
            return response.status_code, error_message(response)
        return response.status_code, parsed

    def get(self, path: str, *, scope: str, params: Mapping[str, Any] | None = None) -> Any:
        status, body = self.request("GET", path, scope=scope, params=params)
        if status >= 400:
            raise HaravanHTTPError(status, body)
        return body

    def close(self) -> None:
        self.http.close()
