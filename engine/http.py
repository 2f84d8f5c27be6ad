"""The one HTTP wrapper, retry policy and rate limiter every connector uses.

- :class:`RetryPolicy` — which failures are retried and how long to wait: 429, 5xx and network
  errors, with bounded exponential backoff and jitter; ``Retry-After`` wins when given; never
  other 4xx.
- :class:`RateLimiter` — a client-side leaky bucket keyed by (system, account). It takes a token
  before each call, learns the server's view of the bucket from response headers, and is
  penalised by ``Retry-After``. On a PostgreSQL state store the processes share one bucket per
  (system, account) instead (:func:`rate_limiter`; hexaflow.ratelimit_pg), with the same rule.
- :class:`HttpClient` — an httpx client with both applied, and logging that never shows headers
  (they carry tokens).
"""
from __future__ import annotations

import functools
import logging
import random
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, TypedDict, Unpack

from hexaflow.errors import RetriesExhausted

if TYPE_CHECKING:   # imported where a client is made: `hexaflow validate` loads connectors'
    import httpx    # catalogues and must not pay for httpx

log = logging.getLogger("hexaflow.http")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# Answers after which a non-idempotent request may have been carried out (429 and 503 say it
# was refused), so it is returned to the caller instead of being re-sent.
MAYBE_PROCESSED_STATUSES = frozenset({500, 502, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6          # first try included
    base_delay: float = 0.25       # seconds before the first retry
    max_delay: float = 10.0        # cap for one wait
    jitter: float = 0.3            # +/- fraction of each wait
    max_retry_after: float = 60.0  # a Retry-After longer than this is treated as a failure

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        delay = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return max(0.0, delay * (1 + random.uniform(-self.jitter, self.jitter)))

    def should_retry_status(self, status: int) -> bool:
        return status in RETRYABLE_STATUSES


DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds, possibly fractional, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class RateLimiter:
    """A leaky bucket as the server keeps it: ``capacity`` calls, draining ``leak_rate``/s.

    ``acquire`` blocks until one more call fits under ``capacity - headroom``. ``observe`` adopts
    the server's count when it is higher than ours (other clients share the bucket).

    ``start_full``: a new process cannot know what other clients (or its own earlier runs) left
    in the server's bucket, so it may assume the bucket is as full as it allows itself
    (``capacity - headroom``) until the first ``observe``, which then replaces the guess with
    the server's count, lower or higher. The first call waits ``1 / leak_rate`` s; a bucket
    that really was full has drained one call by then, so it never answers 429.
    """

    def __init__(self, capacity: int, leak_rate: float, headroom: int = 2,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, *, start_full: bool = False):
        self.capacity = capacity
        self.leak_rate = leak_rate
        self.headroom = headroom
        self._clock = clock
        self._sleep = sleep
        self._guessing = start_full        # level is a guess until the server's first count
        self._level = float(self._limit()) if start_full else 0.0
        self._stamp = clock()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def _limit(self) -> int:
        return max(1, self.capacity - self.headroom)

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._stamp) * self.leak_rate)
        self._stamp = now

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._drain(now)
                wait = self._blocked_until - now
                if wait <= 0:
                    limit = self._limit()
                    if self._level + 1 <= limit:
                        self._level += 1
                        return
                    wait = (self._level + 1 - limit) / self.leak_rate
            self._sleep(max(wait, 0.001))

    def observe(self, used: int, capacity: int | None = None) -> None:
        with self._lock:
            self._drain(self._clock())
            if capacity:
                self.capacity = capacity
            if self._guessing:
                # The first real count replaces the start-up guess, even when it is lower.
                self._guessing = False
                self._level = float(used)
            else:
                self._level = max(self._level, float(used))

    def penalise(self, seconds: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)


class Limiter(Protocol):
    """What a client needs of a rate limiter: :class:`RateLimiter` in the process, or the
    bucket shared through a PostgreSQL state store (hexaflow.ratelimit_pg.SharedRateLimiter)."""

    def acquire(self) -> None: ...

    def observe(self, used: int, capacity: int | None = None) -> None: ...

    def penalise(self, seconds: float) -> None: ...


_limiters: dict[tuple[str, str, str | None], Limiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter(system: str, account: str, capacity: int, leak_rate: float, *,
                 start_full: bool = False) -> Limiter:
    """The limiter for (system, account): one bucket per shop, whoever calls.

    When the process's state store (HEXAFLOW_STATE) is a PostgreSQL server, the bucket is kept
    there and shared by every process on it (hexaflow.ratelimit_pg); otherwise it is this
    process's own :class:`RateLimiter` (one process owns an SQLite store). ``start_full``
    applies when the bucket is created: by this call in the process, or, shared, by the first
    process of the store to use the account (see :class:`RateLimiter`)."""
    from hexaflow.environment import state_location
    store = state_location(None, "")
    shared = store if store.startswith(("postgresql://", "postgres://")) else None
    with _limiters_lock:
        key = (system, account, shared)
        if key not in _limiters:
            local = RateLimiter(capacity, leak_rate, start_full=start_full)
            if shared is None:
                _limiters[key] = local
            else:
                from hexaflow.ratelimit_pg import SharedRateLimiter
                _limiters[key] = SharedRateLimiter(shared, system, account, local,
                                                   start_full=start_full)
        return _limiters[key]


@functools.lru_cache(maxsize=1)
def _tls_context() -> Any:
    """One TLS context (the system's CA certificates) for every client of the process: building
    one loads the whole CA bundle, a noticeable part of a short run's start-up."""
    import httpx
    return httpx.create_ssl_context()


class HttpOptions(TypedDict, total=False):
    """The optional parts of an HttpClient: default headers, the timeout (30 s), the retry
    policy, a rate limiter, a hook that sees every response, and the sleep used between tries."""
    headers: Mapping[str, str] | None
    timeout: float
    retry: RetryPolicy
    limiter: Limiter | None
    on_response: Callable[[httpx.Response], None] | None
    sleep: Callable[[float], None]


class HttpClient:
    """httpx with the retry policy and an optional rate limiter.

    ``on_response`` sees every response (e.g. to feed a rate-limit header to the limiter).
    ``system`` names the target in log lines and errors.
    """

    def __init__(self, base_url: str, *, system: str, **options: Unpack[HttpOptions]):
        self.system = system
        self.retry = options.get("retry", DEFAULT_RETRY)
        self.limiter = options.get("limiter")
        self.on_response = options.get("on_response")
        self.retries = 0            # retries made by this client, for run summaries
        self._sleep = options.get("sleep", time.sleep)
        import httpx
        self._client = httpx.Client(base_url=base_url.rstrip("/"),
                                    headers=dict(options.get("headers") or {}),
                                    timeout=options.get("timeout", 30.0), verify=_tls_context())

    def set_header(self, name: str, value: str) -> None:
        self._client.headers[name] = value

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, headers: Mapping[str, str] | None = None,
                idempotent: bool = True) -> httpx.Response:
        """Send one request, retrying per the policy; return the final response.

        Non-retryable statuses (most 4xx) are returned to the caller to interpret. A request
        with ``idempotent=False`` is not re-sent after a failure that may have reached the
        server (read timeout, dropped connection, 500/502/504); only failures to connect, 429
        and 503 are retried.
        """
        import httpx
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                self.limiter.acquire()
            retry_after: float | None = None
            response: httpx.Response | None = None
            try:
                sent = self._client.request(method, path, params=params, json=json,
                                            headers=headers)
            except httpx.TransportError as exc:
                reached_server = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if reached_server and not idempotent:
                    raise RetriesExhausted(
                        f"{self.system}: {method} {path} failed after it may have reached the "
                        f"server ({type(exc).__name__}); not re-sent because it is not idempotent"
                    ) from exc
                reason = type(exc).__name__
            else:
                response = sent
                if self.on_response is not None:
                    self.on_response(sent)
                if not self.retry.should_retry_status(sent.status_code):
                    return sent
                if not idempotent and sent.status_code in MAYBE_PROCESSED_STATUSES:
                    # The server may have acted before failing; re-sending could act twice.
                    return sent
                reason = f"HTTP {sent.status_code}"
                retry_after = parse_retry_after(sent.headers.get("Retry-After"))
                if sent.status_code == 429 and self.limiter is not None:
                    self.limiter.penalise(retry_after if retry_after is not None else 1.0)
            if attempt >= self.retry.max_attempts:
                raise RetriesExhausted(
                    f"{self.system}: {method} {path} still failing after {attempt} attempts "
                    f"(last: {reason})", response)
            # After a 429 the limiter already holds every caller back for Retry-After.
            limiter_waits = response is not None and response.status_code == 429 \
                and self.limiter is not None
            wait = 0.0 if limiter_waits else self.retry.backoff(attempt, retry_after)
            self.retries += 1
            log.warning("%s: %s %s failed (%s); retry %d/%d in %.2fs", self.system, method, path,
                        reason, attempt, self.retry.max_attempts - 1, wait)
            self._sleep(wait)

    def close(self) -> None:
        self._client.close()
