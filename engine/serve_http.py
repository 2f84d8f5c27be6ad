"""The HTTP layer of ``hexaflow serve``: a Starlette app on uvicorn (docs/serve.md,
docs/decisions/0006-serve-on-starlette-and-uvicorn.md).

Imported only by ``hexaflow serve`` (the ``server`` extra installs Starlette, uvicorn and
prometheus-client): the one-shop commands and the demo never need them. Everything a request
asks for is done by the HookServer (serve.py) and the StatusPage (statuspage.py), on worker
threads (both open the state store, which blocks); this module only frames requests and
answers, with the limits the old hand-made server lacked:

- a listen backlog of 2048 (concurrent webhook deliveries are queued, not reset);
- h11's HTTP/1.1 framing, and a request with both Transfer-Encoding and Content-Length refused
  (400, connection closed: RFC 9112 §6.3, the request-smuggling case); a malformed chunked body
  is h11's 400, and nothing after it on the connection is read as a request;
- a deadline for a request's line and headers, and one for its body (slow clients are cut
  off), a body size limit, idle keep-alive connections closed, and a bound on connections and
  requests in flight (503 beyond it).
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from hexaflow.serve import HookServer

log = logging.getLogger("hexaflow.serve")

BACKLOG = 2048              # pending connections the kernel queues before refusing
KEEP_ALIVE_S = 5            # an idle kept-alive connection is closed after this
HEADERS_TIMEOUT_S = 10.0    # a request's line and headers must all arrive within this
BODY_TIMEOUT_S = 10.0       # and its body within this once the headers are in
MAX_CONCURRENCY = 1000      # open connections (or requests in flight) before answering 503
MAX_HEADER_BYTES = 64 * 1024
WORKER_THREADS = 40         # requests doing store or page work at once (the rest wait)
STOP_S = 10.0               # graceful stop: requests in flight get this long to finish


class Refused(Exception):
    """A request refused before its body was (fully) read: answered, then the connection is
    closed (what follows on it cannot be trusted to be the next request)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def json_answer(status: int, body: Any, *, close: bool = False) -> Response:
    data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
    headers = {"connection": "close"} if close else None
    return Response(data, status, headers=headers, media_type="application/json; charset=utf-8")


async def read_body(request: Request, limit: int, *, length_required: bool = False) -> bytes:
    """The request's body, at most ``limit`` bytes, arriving within BODY_TIMEOUT_S; Refused
    otherwise. ``length_required``: a chunked body is refused (411)."""
    framing = request.headers.get("transfer-encoding")
    declared = request.headers.get("content-length")
    if framing is not None and declared is not None:
        raise Refused(400, "a request with both Transfer-Encoding and Content-Length is refused "
                           "(RFC 9112 §6.3); send one of them")
    if framing is not None and length_required:
        raise Refused(411, "Content-Length required")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"body larger than {limit} bytes")
    parts: list[bytes] = []
    size = 0

    async def gather() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body larger than {limit} bytes")
            parts.append(chunk)
    try:
        await asyncio.wait_for(gather(), BODY_TIMEOUT_S)
    except TimeoutError:
        raise Refused(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s") from None
    return b"".join(parts)


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for a request's line and headers: uvicorn only
    times out idle kept-alive connections, and its timer stops at the first byte, so a client
    that never finishes its headers (or never sends any) would hold a connection forever."""

    _headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:          # a request's headers are in
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()                       # waiting for the next request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._headers_timer = self.loop.call_later(HEADERS_TIMEOUT_S, self._headers_late)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_late(self) -> None:
        self._headers_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def _route_label(path: str) -> str:
    """The route a request is counted under in the latency histogram (few values: never the
    raw path, which would make a label per order id)."""
    head = path.strip("/").split("/", 1)[0]
    return head if head in ("hooks", "status", "health", "metrics") else "other"


def _path_tenant(path: str) -> str | None:
    """The tenant a path names (/hooks/<tenant>/<connector>, /status/t/<tenant>/...)."""
    parts = path.strip("/").split("/")
    if parts[0] == "hooks" and len(parts) == 3:
        return parts[1]
    if parts[0] == "status" and len(parts) >= 3 and parts[1] == "t":
        return parts[2]
    return None


class WebApp:
    """The routes of one HookServer (its tenant), as a Starlette app."""

    def __init__(self, hooks: "HookServer"):
        self.hooks = hooks
        self._limiter: anyio.CapacityLimiter | None = None
        routes = [
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/hooks/{connector}", self.hook, methods=["POST"]),
            Route("/hooks/{tenant}/{connector}", self.hook, methods=["POST"]),
            Route("/status", self.status, methods=["GET", "POST"]),
            Route("/status/{rest:path}", self.status, methods=["GET", "POST"]),
        ]
        self.app = Starlette(routes=routes, exception_handlers={404: self.not_found,
                                                                405: self.not_found})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.hooks.metrics.observe(_route_label(scope["path"]), time.perf_counter() - started,
                                       _path_tenant(scope["path"]))

    async def _in_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:         # made in the event loop's thread, on first use
            self._limiter = anyio.CapacityLimiter(WORKER_THREADS)
        return await anyio.to_thread.run_sync(work, *args, limiter=self._limiter)

    async def _guarded(self, request: Request, limit: int, answer: Callable[[bytes], Awaitable[Response]],
                       length_required: bool = False) -> Response:
        try:
            body = await read_body(request, limit, length_required=length_required)
        except Refused as refused:
            log.info("serve: refused %s %s (HTTP %d): %s", request.method, request.url.path,
                     refused.status, refused.message)
            return json_answer(refused.status, {"error": refused.message}, close=True)
        except ClientDisconnect:
            return Response(b"", 400)     # nobody is listening any more
        return await answer(body)

    # -- routes --------------------------------------------------------------------------------
    async def not_found(self, request: Request, _exc: Exception) -> Response:
        hint = ("not found; POST /hooks/<connector>" if request.method == "POST"
                else "not found; try GET /health or POST /hooks/<connector>")

        async def answer(_body: bytes) -> Response:
            return json_answer(404, {"error": hint})
        return await self._guarded(request, self.hooks.max_body, answer)

    async def health(self, request: Request) -> Response:
        async def answer(_body: bytes) -> Response:
            return json_answer(200, self.hooks.health())
        return await self._guarded(request, self.hooks.max_body, answer)

    async def metrics(self, request: Request) -> Response:
        async def answer(_body: bytes) -> Response:
            data, content_type = await self._in_thread(self.hooks.metrics.render)
            return Response(data, 200, media_type=content_type)
        return await self._guarded(request, self.hooks.max_body, answer)

    async def hook(self, request: Request) -> Response:
        tenant = request.path_params.get("tenant")
        name = request.path_params["connector"]

        async def answer(body: bytes) -> Response:
            try:
                status, reply = await self._in_thread(self.hooks.handle_hook, tenant, name, body,
                                                      dict(request.headers.items()))
            except Exception:  # a bug: 500 makes the sender retry; the scheduler is the net
                log.exception("serve: handling a %s delivery failed", name)
                status, reply = 500, {"error": "internal error; the delivery was not stored"}
            self.hooks.metrics.delivery(name, status, tenant)
            return json_answer(status, reply)
        return await self._guarded(request, self.hooks.max_body, answer, length_required=True)

    async def status(self, request: Request) -> Response:
        from hexaflow.statuspage import MAX_FORM, Response as PageResponse

        async def answer(body: bytes) -> Response:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            client = request.client.host if request.client else ""
            try:
                page = await self._in_thread(self.hooks.status_page.handle, request.method, target,
                                             dict(request.headers.items()), body, client)
            except Exception:   # a bug: say so without details (they could hold data)
                log.exception("serve: the status page failed on %s", request.url.path)
                page = PageResponse(500, b"internal error", "text/plain; charset=utf-8")
            out = Response(page.body, page.status, media_type=page.content_type)
            for key, value in page.headers:
                out.headers.append(key, value)
            return out
        return await self._guarded(request, MAX_FORM, answer)


class HTTPServer:
    """uvicorn on a socket bound here (so that a port in use is an error at start, and port 0
    is known before the first request), in a thread with its own event loop."""

    def __init__(self, app: Any, host: str, port: int):
        self.sock = socket.create_server((host, port), backlog=BACKLOG)
        self.sock.setblocking(False)
        config = uvicorn.Config(
            app, http=_Protocol, loop="asyncio", lifespan="off", log_config=None,
            access_log=False, server_header=False, backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONCURRENCY,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=int(STOP_S))
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="hexaflow-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start (see the log above)")
            time.sleep(0.01)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_S + 5)
        self.sock.close()
