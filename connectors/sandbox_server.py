"""What every sandbox shares: a real HTTP server on loopback, routing, JSON helpers, and
fault injection.

A sandbox is a :class:`SandboxApp` subclass that registers its routes with :meth:`SandboxApp.add`.
:class:`SandboxServer` serves one app on a thread (tests) or in the foreground (``hexaflow
sandbox``). Faults apply to the real API routes, never to the admin routes under ``/_sandbox/``.

Admin routes every sandbox has:
- ``POST /_sandbox/faults`` — body with any of ``error_rate`` (0..1), ``kinds`` (subset of
  ``["500", "502", "503", "timeout", "drop", "429"]``), ``latency_ms``, ``timeout_ms``, ``seed``,
  ``retry_after`` (the seconds an injected 429 asks for, default 1), ``count`` (inject at most
  this many faults, then none: ``{"error_rate": 1, "kinds": ["429"], "count": 1}`` is exactly
  one 429); an empty body resets to no faults. Answers the faults now in force.
- ``GET /_sandbox/faults`` — the faults in force and how many of each were injected.
"""
from __future__ import annotations

import json
import logging
import random
import re
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("hexaflow.sandbox")

FAULT_KINDS = ("500", "502", "503", "timeout", "drop", "429")


class DropConnection(Exception):
    """Raised by a handler (or fault injection) to close the socket without an answer."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]          # last value per name
    query_lists: dict[str, list[str]]
    headers: dict[str, str]        # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)   # from the route pattern

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"), parse_float=Decimal)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int = 200
    body: Any = None                       # JSON-able value, or bytes/str for raw bodies
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str) and not self.content_type.startswith("application/json"):
            return self.body.encode("utf-8")
        return dumps(self.body).encode("utf-8")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_default)


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(status=status, body=body, headers=dict(headers))


@dataclass
class Faults:
    error_rate: float = 0.0
    kinds: tuple[str, ...] = ("500", "503", "timeout", "drop")
    latency_ms: int = 0
    timeout_ms: int = 2000
    seed: int | None = None
    retry_after: float = 1.0        # what an injected 429's Retry-After asks for
    count: int | None = None        # at most this many faults in all (None: no limit)
    injected: dict[str, int] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = list(self.kinds)
        return data


Handler = Callable[[Request], Response]


class SandboxApp:
    """Routes plus shared state. Subclasses add routes in ``__init__`` and guard their store
    with ``self.lock`` (the server is multi-threaded)."""

    name = "sandbox"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.faults = Faults()
        self._rng = random.Random()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.add("POST", r"/_sandbox/faults", self._set_faults)
        self.add("GET", r"/_sandbox/faults", lambda req: json_response(self.faults.public()))

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern + r"\Z"), handler))

    # -- faults -----------------------------------------------------------------------
    def _set_faults(self, req: Request) -> Response:
        body = req.json() or {}
        with self.lock:
            faults = Faults()
            for key, cast in (("error_rate", float), ("latency_ms", int), ("timeout_ms", int),
                              ("retry_after", float), ("count", int)):
                if key in body:
                    setattr(faults, key, cast(body[key]))
            faults.seed = body.get("seed")
            if "kinds" in body:
                unknown = [k for k in body["kinds"] if str(k) not in FAULT_KINDS]
                if unknown:
                    return json_response({"error": f"unknown fault kinds {unknown}; "
                                                   f"known: {list(FAULT_KINDS)}"}, 400)
                faults.kinds = tuple(str(k) for k in body["kinds"])
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self.on_faults(body)
        return json_response(self.faults.public())

    def on_faults(self, body: dict[str, Any]) -> None:
        """Hook for sandbox-specific switches sent with the faults (e.g. ``rate_limit``)."""

    def inject_fault(self, req: Request) -> Response | None:
        """A fault to answer instead of the real route, or None."""
        faults = self.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.error_rate <= 0 or not faults.kinds:
            return None
        with self.lock:
            if faults.count is not None and sum(faults.injected.values()) >= faults.count:
                return None
            if self._rng.random() >= faults.error_rate:
                return None
            kind = self._rng.choice(faults.kinds)
            faults.injected[kind] = faults.injected.get(kind, 0) + 1
        if kind == "timeout":
            time.sleep(faults.timeout_ms / 1000)
            raise DropConnection()
        if kind == "drop":
            raise DropConnection()
        if kind == "429":
            return json_response({"errors": "Too Many Requests"}, 429,
                                 **{"Retry-After": f"{faults.retry_after:g}"})
        return json_response({"errors": "Injected failure"}, int(kind))

    # -- dispatch ---------------------------------------------------------------------
    def dispatch(self, req: Request) -> Response:
        if not req.path.startswith("/_sandbox/"):
            fault = self.inject_fault(req)
            if fault is not None:
                return fault
        allowed = []
        for method, pattern, handler in self._routes:
            match = pattern.match(req.path)
            if not match:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            req.params = match.groupdict()
            return handler(req)
        if allowed:
            return json_response({"errors": "Method Not Allowed"}, 405)
        return json_response({"errors": "Not Found"}, 404)


def _make_handler(app: SandboxApp) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"hexaflow-{app.name}-sandbox"
        # Headers and body go out in separate writes; with Nagle's algorithm the second waits
        # for the client's delayed ACK (~40 ms per call on loopback).
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default
            log.debug("%s " + fmt, app.name, *args)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            lists = parse_qs(parts.query, keep_blank_values=True)
            req = Request(
                method=self.command, path=parts.path,
                query={k: v[-1] for k, v in lists.items()}, query_lists=lists,
                headers={k.lower(): v for k, v in self.headers.items()}, body=body)
            try:
                resp = app.dispatch(req)
            except DropConnection:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            except Exception:  # a sandbox bug must show, not hang the client
                log.exception("%s sandbox: error handling %s %s", app.name, req.method, req.path)
                resp = json_response({"errors": "Internal Server Error"}, 500)
            data = resp.encode()
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return _Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class SandboxServer:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self._server = _Server((host, port), _make_handler(app))
        bound_host, self.port = self._server.server_address[:2]
        # An AF_INET server's address is (str, int); typeshed also allows bytes (AF_UNIX).
        if not isinstance(bound_host, str):
            raise TypeError(f"sandbox server bound to an unexpected address {bound_host!r}")
        self.host: str = bound_host
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "SandboxServer":
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"{self.app.name}-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
