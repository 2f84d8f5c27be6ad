"""Access to the status page (docs/status-page.md "Access"): the admin token's strength rule,
the login throttle, and the server-side sessions with their CSRF tokens.

The throttle's failures and the sessions are kept in the state store (tables
``status_login_failures`` and ``status_sessions``), by the store's clock: every serve process
on one store (behind a load balancer) knows every session, a logout anywhere ends it
everywhere, and a guesser gets the same few tries whichever process answers. The rules are
here; the store only keeps rows (StateStore.change_login_failures and its neighbours). Each
request hands in a writable store of its own (the page's store is read-only).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from hexaflow.state import LoginFailures, StateStore
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


CLIENT, TOKEN = "client", "token"     # the scopes of the failures kept
TOKEN_KEY = (TOKEN, "")


def _after_failure(failures: LoginFailures | None, digest: str, now: float, free: int,
                   ceiling: float) -> LoginFailures | None:
    """The failures once ``digest`` was guessed wrong; None when it was guessed recently (the
    same wrong token again is no new guess)."""
    failures = failures or LoginFailures()
    if digest in failures.recent:
        return None
    count = failures.count + 1
    until = now + min(ceiling, FIRST_WAIT_S * 2 ** (count - free)) if count >= free else failures.until
    return LoginFailures(count, until, (*failures.recent, digest)[-REMEMBERED_GUESSES:])


class LoginThrottle:
    """Exponential back-off after a few wrong tokens, per client address and for the token
    (all clients together). While either waits, a try is answered 429 without being looked at,
    so a guess made then teaches nothing. Repeating the same wrong token (a stale bookmark, a
    misconfigured monitor) is counted once: it is no new guess."""

    def __init__(self, store: StateStore):
        self.store = store
        self._kept: bool | None = None      # whether wait() found failures (None: not asked)

    def wait(self, client: str) -> float:
        """Seconds before a try from ``client`` will be looked at (0: now)."""
        kept = self.store.login_failures([(CLIENT, client), TOKEN_KEY])
        self._kept = bool(kept)
        if not kept:
            return 0.0
        return max(0.0, max(f.until for f in kept.values()) - self.store.now())

    def failed(self, client: str, guess: str) -> None:
        digest = hashlib.sha256(guess.encode("utf-8", "replace")).hexdigest()
        rules = {(CLIENT, client): (FREE_FAILURES_PER_CLIENT, MAX_WAIT_CLIENT_S),
                 TOKEN_KEY: (FREE_FAILURES_PER_TOKEN, MAX_WAIT_TOKEN_S)}

        def change(now: float, kept: dict[tuple[str, str], LoginFailures]
                   ) -> dict[tuple[str, str], LoginFailures]:
            out = {key: _after_failure(kept.get(key), digest, now, *rule)
                   for key, rule in rules.items()}
            return {key: failures for key, failures in out.items() if failures is not None}
        self.store.change_login_failures(list(rules), change, REMEMBERED_CLIENTS)

    def succeeded(self, client: str) -> None:
        """The right token ends the waits (of this client, and of the token). Nothing to end
        when wait() found none: no write on every request of a script using the token."""
        if self._kept is False:
            return
        self.store.clear_login_failures([(CLIENT, client), TOKEN_KEY])


@dataclass(frozen=True)
class Session:
    expires: float                          # by the store's clock
    csrf: str                               # the token every state-changing form carries


class Sessions:
    """Logged-in browsers, by a random session id (the cookie holds only that id; the store
    only its digest). Logout ends a session in the store, so its cookie no longer works in
    any serve process."""

    def __init__(self, store: StateStore, seconds: float = SESSION_SECONDS):
        self.store, self.seconds = store, seconds

    def create(self) -> tuple[str, Session]:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = self.store.put_session(_key(sid), csrf, self.seconds, MAX_SESSIONS)
        return sid, Session(expires, csrf)

    def get(self, sid: str) -> Session | None:
        found = self.store.session(_key(sid))
        return Session(found[1], found[0]) if found else None

    def end(self, sid: str) -> None:
        self.store.end_session(_key(sid))


def _key(sid: str) -> str:
    """Sessions are kept by a digest of their id: the id itself is never stored, and a
    lookup's timing says nothing about it."""
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


def csrf_matches(session: Session, given: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "replace"),
                                               session.csrf.encode("utf-8"))
