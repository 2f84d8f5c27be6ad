"""``hexaflow serve``: receive webhooks and callbacks, run flows on a schedule (docs/serve.md).

Receivers only verify, store and acknowledge: ``POST /hooks/<connector>`` (or
``/hooks/<tenant>/<connector>``) hands the raw body to the connector's ``receive`` (which
checks the signature), puts webhook events into the inbox, applies asynchronous-write results
to the ledger, asks the dispatcher for the runs and answers. No source read, no mapping and no
target call happens on the request path. The HTTP layer (Starlette on uvicorn, with its limits)
is serve_http.py, imported only here: the ``server`` extra installs it.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Required, TextIO, TypedDict, Unpack

from hexaflow.connector import AsyncResult, Connector, ConnectorError, Received
from hexaflow.dispatch import Dispatcher
from hexaflow.environment import environment_config, log_format, tenant_name
from hexaflow.plan import Plan
from hexaflow.registry import get_connector
from hexaflow.runner import Connectors, FlowError, apply_async_results, load_plan
from hexaflow.state import StateStore, StateError, open_store, state_path as default_state_path
from hexaflow.statuspage import StatusPage

log = logging.getLogger("hexaflow.serve")

MAX_BODY = 5 * 1024 * 1024      # a webhook or callback is small; refuse anything huge
UNMATCHED_RESULT_DELAY_S = 1.0  # before polling for a result that overtook its send
DELIVERY_DIGESTS = "delivery-digest"   # inbox resource of deliveries kept to refuse replays
EXIT_OK, EXIT_CONFIG = 0, 1
LOG_FORMAT_VARIABLE = "HEXAFLOW_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
SERVER_EXTRA = "pip install 'hexaflow[server]'"


class Scheduler:
    """Asks the dispatcher for every flow every ``interval`` seconds (the first time at start:
    catch up on what changed while serve was down). Each run ends by polling queued results."""

    def __init__(self, dispatcher: Dispatcher, tenant: str, interval: float):
        self.dispatcher, self.tenant, self.interval = dispatcher, tenant, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="hexaflow-scheduler", daemon=True)

    def start(self) -> "Scheduler":
        if self.interval > 0:
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.is_set():
            self.dispatcher.request_all(self.tenant)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


class Listen(TypedDict, total=False):
    """Where a HookServer listens (default 127.0.0.1, any free port) and how often its
    scheduler asks for every flow (seconds; 0, the default: never)."""
    host: str
    port: int
    interval: float


class HookServer:
    """The receivers, the dispatcher and the scheduler of one tenant, on one HTTP port."""

    def __init__(self, plans: Iterable[Plan], *, tenant: str, config: Mapping[str, str],
                 state: str, **listen: Unpack[Listen]):
        try:    # the `server` extra: the one-shop commands and the demo run without it
            from hexaflow.serve_http import HTTPServer, WebApp
            from hexaflow.serve_metrics import ServeMetrics
        except ImportError as exc:
            raise FlowError(f"hexaflow serve needs its HTTP server packages ({exc.name} is not "
                            f"installed): {SERVER_EXTRA}") from None
        host, port = listen.get("host", "127.0.0.1"), listen.get("port", 0)
        interval = listen.get("interval", 0.0)
        self.plans = list(plans)
        if state == ":memory:":
            raise FlowError("hexaflow serve needs a state file, not :memory: (its threads each "
                            "open their own connection): set HEXAFLOW_STATE or --state to a file "
                            "path, e.g. .hexaflow/state.db")
        _check_state(state)
        self.tenant, self.config, self.state = tenant, dict(config), state
        self.dispatcher = Dispatcher(self.plans, state_path=state,
                                     config_for=lambda _tenant: self.config)
        self.scheduler = Scheduler(self.dispatcher, tenant, interval)
        # Connectors that receive, named by the flows (sources and targets). Instances are
        # shared by the request threads: receive() is pure (no I/O, no shared mutable state).
        names: list[str] = []
        for plan in self.plans:
            names.append(plan.source.connector)
            for route in plan.routes:
                names.extend([route.connector] if route.connector else [])
                names.extend(ens.connector for ens in route.ensure)
        self.receivers: dict[str, Connector] = {}
        # The read-only status page (docs/status-page.md); off without HEXAFLOW_ADMIN_TOKEN.
        self.status_page = StatusPage(config=self.config, state=state, tenants={
            self.tenant: {p.name: (p.source.connector, p.source.resource) for p in self.plans}})
        base_dir = self.plans[0].base_dir if self.plans else Path(".")
        self._connectors = Connectors(tenant, base_dir, self.config)
        for name in dict.fromkeys(names):
            cls = get_connector(name)
            if cls is not None and cls.can_receive():
                # Created now so that a missing setting is reported at start, not at the
                # first delivery.
                self.receivers[name] = self._connectors.get(name)
        self.max_body = MAX_BODY
        self.metrics = ServeMetrics(self)
        try:
            self.http = HTTPServer(WebApp(self), host, port)
        except OSError as exc:
            self._connectors.close()
            raise FlowError(_listen_error(host, port, exc)) from None

    @property
    def url(self) -> str:
        host, port = self.http.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def hook_url(self, connector: str, *, with_tenant: bool = False) -> str:
        """Where ``connector``'s deliveries go: /hooks/<connector>, or with the tenant in the
        path (/hooks/<tenant>/<connector>, the form many shops on one service will need)."""
        return f"{self.url}/hooks/{self.tenant}/{connector}" if with_tenant else \
            f"{self.url}/hooks/{connector}"

    def start(self) -> "HookServer":
        self._recover()
        self.dispatcher.start()
        self.http.start()
        self.scheduler.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking requests, then let the run in progress finish (bounded)."""
        self.scheduler.stop()
        self.http.stop()
        self.dispatcher.stop(timeout)
        self._connectors.close()

    def _recover(self) -> None:
        # Events acknowledged before a crash but not yet run: ask for their runs again.
        store = open_store(self.state)
        try:
            pending = store.inbox(self.tenant, pending=True)
        finally:
            store.close()
        for source in {(row["connector"], row["resource"]) for row in pending}:
            self.dispatcher.request_source(self.tenant, *source)

    # -- the request path -----------------------------------------------------------------
    def handle_hook(self, name: str, raw_body: bytes,
                    headers: Mapping[str, str]) -> tuple[int, Any]:
        connector = self.receivers.get(name)
        if connector is None:
            return 404, {"error": f"no receiver for {name!r}; known: {sorted(self.receivers)}"}
        received = connector.receive(raw_body, headers)
        if received.refused:
            # Forged, unsigned or unreadable: nothing is stored, nothing runs.
            log.warning("serve: refused a %s delivery (HTTP %d): %s", name, received.status,
                        json.dumps(received.body, ensure_ascii=False, default=str))
            return received.status, received.body
        sources: set[str] = set()
        unmatched = False
        if received.events or received.results or received.to_confirm:
            store = open_store(self.state)      # one connection per request thread
            try:
                with store.transaction():       # the digest is kept only with its effects
                    if not self._first_delivery(store, name, received):
                        return received.status, received.body
                    for event in received.events:
                        if not self.dispatcher.flows_reading(name, event.resource):
                            continue            # no flow reads it: nothing would handle the row
                        if store.put_inbox(self.tenant, name, event.resource, event.record_id,
                                           event.version):
                            sources.add(event.resource)
                    if received.results:
                        apply_async_results(store, self.tenant, name, received.results,
                                            report=lambda line: log.warning("serve: %s", line))
                    # A result can overtake the run that sent the document (it records the
                    # target's ref just after the send returns): nothing to apply it to yet.
                    unmatched = not all(store.has_target_ref(self.tenant, name, r.target_ref)
                                        for r in received.results + received.to_confirm)
            finally:
                store.close()
        # Only a new event asks for a run: a duplicate delivery was already asked for.
        for resource in sources:
            self.dispatcher.request_source(self.tenant, name, resource)
        if unmatched or received.to_confirm:
            self._poll_soon(name, received.to_confirm, unmatched)
        return received.status, received.body

    def _poll_soon(self, name: str, to_confirm: list[AsyncResult], unmatched: bool) -> None:
        """Run the flows writing to ``name``: each run polls the target first, which applies
        what the target really did (the confirmation of ``to_confirm``), and ends by polling
        its queued documents, which picks up a result that overtook its send (``unmatched``:
        once the sending run has finished)."""
        if to_confirm:
            states = ", ".join(sorted({r.status for r in to_confirm}))
            log.info("serve: a %s delivery reports %d document(s) %s: applied only once a poll "
                     "of %s confirms it (the flows writing to %s run now)", name,
                     len(to_confirm), states, name, name)
        delay = UNMATCHED_RESULT_DELAY_S if unmatched else 0.0
        for flow in self.dispatcher.flows_writing(name):
            self.dispatcher.request(self.tenant, flow, delay=delay)

    def _first_delivery(self, store: StateStore, name: str, received: Received) -> bool:
        """Keep the delivery's digest in the inbox; False when it was seen before (a replay,
        or the sender's retry of a delivery already applied): it is then acknowledged and
        nothing in it is applied."""
        if received.digest is None:
            return True
        if store.put_inbox(self.tenant, name, DELIVERY_DIGESTS, received.digest, None,
                           handled=True):
            return True
        log.warning("serve: a %s delivery seen before (a replay, or a retry of one already "
                    "applied) was acknowledged; nothing in it was applied", name)
        return False

    def tenant_names(self) -> list[str]:
        """The tenants this serve serves (/metrics reports each)."""
        return [self.tenant]

    def health(self) -> dict[str, Any]:
        return {"ok": True, "tenant": self.tenant, "runs": self.dispatcher.runs,
                "pending": [flow for _tenant, flow in self.dispatcher.pending()],
                "hooks": sorted(self.receivers)}


def _check_state(state: str) -> None:
    """A state setting that cannot be opened, or a state file that is damaged or read-only,
    stops serve at start (StateError) instead of failing every run and delivery later."""
    store = open_store(state)
    try:
        store.check_usable()
    finally:
        store.close()


def _listen_error(host: str, port: int, exc: OSError) -> str:
    """Why serve cannot listen on host:port, and which option to change."""
    import errno
    import socket
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host "
                f"(e.g. 127.0.0.1, or 0.0.0.0 for every interface)")
    reason = {errno.EADDRINUSE: "the port is already in use (by another program, or another "
                                "hexaflow serve)",
              errno.EACCES: "permission denied (ports below 1024 need root)"}.get(
                  exc.errno or 0, exc.strerror or str(exc))
    return f"cannot listen on {host}:{port}: {reason}; choose another port with --port (0: any free port)"


# --------------------------------------------------------------------------- the command
def load_flows(paths: Iterable[str]) -> list[Plan]:
    from hexaflow.validate import Report, find_flow_files
    report = Report()
    files = find_flow_files(paths, report)
    if report.problems:
        raise FlowError("cannot serve: fix the paths above", list(report.problems))
    if not files:
        raise FlowError("no flow files found in " + ", ".join(paths) + " (a flow file is YAML "
                        "with `flow:`, `source:` and `routes:`)")
    plans = [load_plan(path) for path in files]
    names = [p.name for p in plans]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FlowError(f"flow names must be unique; given twice: {', '.join(twice)} (in "
                        f"{', '.join(str(p.file) for p in plans if p.name in twice)}); rename one "
                        f"(its `flow:` key) or serve only one of the files")
    return plans


class ServeOptions(TypedDict, total=False):
    """How ``hexaflow serve`` listens (``host``, ``port``, the scheduler's ``interval``), where
    it prints, and the event that stops it (default: SIGINT / SIGTERM)."""
    host: Required[str]
    port: Required[int]
    interval: Required[float]
    out: TextIO | None
    err: TextIO | None
    stop: threading.Event | None
    log_format: str | None


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line (for a log collector), with the tenant as a field: the
    record's own (``extra={"tenant": ...}``) or the serve's."""

    def __init__(self, tenant: str):
        super().__init__()
        self.tenant = tenant

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "tenant": getattr(record, "tenant", self.tenant), "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_format_of(explicit: str | None) -> str:
    """--log-format, else HEXAFLOW_LOG_FORMAT, else text; FlowError naming both when unknown."""
    chosen = log_format(explicit)
    if chosen not in LOG_FORMATS:
        raise FlowError(f"log format {chosen!r} (--log-format or {LOG_FORMAT_VARIABLE}): use "
                        f"{' or '.join(LOG_FORMATS)}")
    return chosen


def _setup_logging(tenant: str, log_format: str, err: TextIO) -> None:
    root = logging.getLogger()
    if root.handlers:          # the host process (or pytest) set logging up: keep its own
        return
    handler = logging.StreamHandler(err)
    handler.setFormatter(JsonLogFormatter(tenant) if log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def serve_command(paths: Iterable[str], *, tenant: str | None = None, state: str | None = None,
                  **options: Unpack[ServeOptions]) -> int:
    host, port, interval = options["host"], options["port"], options["interval"]
    out, err = options.get("out") or sys.stdout, options.get("err") or sys.stderr
    tenant = tenant_name(tenant)
    try:
        _setup_logging(tenant, log_format_of(options.get("log_format")), err)
        plans = load_flows(paths)
        server = HookServer(plans, tenant=tenant, config=environment_config(),
                            state=default_state_path(state), host=host, port=port,
                            interval=interval)
    except (FlowError, ConnectorError, StateError, OSError) as exc:
        for problem in getattr(exc, "problems", []):
            print(problem.text(), file=err)
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    stop = options.get("stop") or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"hexaflow serve: listening on {server.url} (tenant {tenant}; flows: "
          f"{', '.join(p.name for p in plans)})", file=out)
    for name in sorted(server.receivers):
        print(f"  POST {server.hook_url(name)}   (webhooks / callbacks of {name}; also "
              f"{server.hook_url(name, with_tenant=True)})", file=out)
    print(f"  GET  {server.url}/health", file=out)
    print(f"  GET  {server.url}/metrics   (Prometheus)", file=out)
    print(f"  GET  {server.url}/status   " + ("(status page; log in with HEXAFLOW_ADMIN_TOKEN)"
          if server.status_page.enabled else "(status page off: set HEXAFLOW_ADMIN_TOKEN)"), file=out)
    print("  scheduled runs: " + (f"every {interval:g} s" if interval > 0 else "off"), file=out)
    out.flush()
    stop.wait()
    print("hexaflow serve: stopping (waiting for the run in progress)", file=out)
    out.flush()
    server.stop()
    print("hexaflow serve: stopped", file=out)
    return EXIT_OK
