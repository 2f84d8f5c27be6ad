"""Access to the status page (docs/status-page.md "Access"): the admin token's strength rule,
the login throttle, and the server-side sessions with their CSRF tokens.

Pure Python with no I/O, shared by the request threads (each class holds a lock). Kept in the
serve process's memory: a restart logs everyone out, which is the safe side.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

MIN_TOKEN_LENGTH = 24
MIN_TOKEN_DISTINCT = 10
TOKEN_RULE = (f"at least {MIN_TOKEN_LENGTH} characters with at least {MIN_TOKEN_DISTINCT} "
              f"different ones, from a random generator, e.g. "
              f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")

SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000             # the oldest session ends first beyond this

# A client may get a few wrong tokens through before it must wait; the token itself (every
# client together: a guesser with many addresses) a few more, with a shorter ceiling, since
# while it waits the admin waits too.
FREE_FAILURES_PER_CLIENT = 5
FREE_FAILURES_PER_TOKEN = 20
FIRST_WAIT_S = 1.0              # then doubled after each further failure
MAX_WAIT_CLIENT_S = 900.0
MAX_WAIT_TOKEN_S = 60.0
REMEMBERED_GUESSES = 32         # per client: the same wrong token again is not a new guess
REMEMBERED_CLIENTS = 10_000


def token_weakness(token: str) -> str | None:
    """Why ``token`` is too weak to guard the status page (None: strong enough). Never
    includes the token."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"it is {len(token)} characters long"
    distinct = len(set(token))
    if distinct < MIN_TOKEN_DISTINCT:
        return f"it uses only {distinct} different characters"
    return None


@dataclass
class _Failures:
    count: int = 0
    until: float = 0.0                      # no try is looked at before this (monotonic)
    recent: deque[bytes] = field(default_factory=lambda: deque(maxlen=REMEMBERED_GUESSES))


class LoginThrottle:
    """Exponential back-off after a few wrong tokens, per client address and for the token
    (all clients together). While either waits, a try is answered 429 without being looked at,
    so a guess made then teaches nothing. Repeating the same wrong token (a stale bookmark, a
    misconfigured monitor) is counted once: it is no new guess."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, _Failures] = OrderedDict()
        self._token = _Failures()

    def wait(self, client: str) -> float:
        """Seconds before a try from ``client`` will be looked at (0: now)."""
        now = self.clock()
        with self._lock:
            mine = self._clients.get(client)
            until = max(self._token.until, mine.until if mine else 0.0)
        return max(0.0, until - now)

    def failed(self, client: str, guess: str) -> None:
        digest = hashlib.sha256(guess.encode("utf-8", "replace")).digest()
        now = self.clock()
        with self._lock:
            mine = self._clients.pop(client, None) or _Failures()
            self._clients[client] = mine                 # most recent last
            while len(self._clients) > REMEMBERED_CLIENTS:
                self._clients.popitem(last=False)
            for failures, free, ceiling in ((mine, FREE_FAILURES_PER_CLIENT, MAX_WAIT_CLIENT_S),
                                            (self._token, FREE_FAILURES_PER_TOKEN, MAX_WAIT_TOKEN_S)):
                if digest in failures.recent:
                    continue
                failures.recent.append(digest)
                failures.count += 1
                if failures.count >= free:
                    failures.until = now + min(ceiling, FIRST_WAIT_S * 2 ** (failures.count - free))

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)
            self._token = _Failures()


@dataclass(frozen=True)
class Session:
    expires: float                          # time.time()
    csrf: str                               # the token every state-changing form carries


class Sessions:
    """Logged-in browsers, by a random session id (the cookie holds only that id). Logout
    ends a session here, so its cookie no longer works anywhere."""

    def __init__(self, seconds: float = SESSION_SECONDS, clock: Callable[[], float] = time.time):
        self.seconds, self.clock = seconds, clock
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(self.clock() + self.seconds, secrets.token_urlsafe(32))
        with self._lock:
            self._by_id[_key(sid)] = session
            while len(self._by_id) > MAX_SESSIONS:
                self._by_id.popitem(last=False)
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            session = self._by_id.get(_key(sid))
            if session is not None and session.expires <= self.clock():
                del self._by_id[_key(sid)]
                return None
            return session

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(_key(sid), None)


def _key(sid: str) -> str:
    """Sessions are kept by a digest of their id: the id itself is never stored, and a
    lookup's timing says nothing about it."""
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


def csrf_matches(session: Session, given: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "replace"),
                                               session.csrf.encode("utf-8"))
