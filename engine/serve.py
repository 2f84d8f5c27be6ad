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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Required, TextIO, TypedDict, Unpack

from hexaflow.connector import AsyncResult, Connector, ConnectorError, Received
from hexaflow.dispatch import CURRENT_TENANT, Dispatcher
from hexaflow.environment import environment_config, log_format
from hexaflow.plan import Plan
from hexaflow.registry import get_connector
from hexaflow.runner import Connectors, FlowError, apply_async_results, load_plan
from hexaflow.state import StateStore, StateError, is_server_url, open_store, state_path as default_state_path
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
    """Asks the dispatcher for every flow of every tenant every ``interval`` seconds (the
    first time at start: catch up on what changed while serve was down). Each run ends by
    polling queued results."""

    def __init__(self, dispatcher: Dispatcher, interval: float):
        self.dispatcher, self.interval = dispatcher, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="hexaflow-scheduler", daemon=True)

    def start(self) -> "Scheduler":
        if self.interval > 0:
            self._thread.start()
        return self

    def _tick(self) -> None:
        while not self._stop.is_set():
            self.dispatcher.request_all()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


class Listen(TypedDict, total=False):
    """Where a HookServer listens (default 127.0.0.1, any free port), how often its
    scheduler asks for every flow (seconds; 0, the default: never) and who runs the flows
    (``dispatch``: ``local`` threads, the default, or ``queue``: workers, docs/workers.md)."""
    host: str
    port: int
    interval: float
    dispatch: str


@dataclass
class ServedTenant:
    """A tenant one serve holds: its flows and its connectors' configuration. ``problem``:
    why it cannot be served (set at start); its deliveries are then answered 503 and its
    flows do not run, while the other tenants are served."""
    name: str
    plans: list[Plan]
    config: Mapping[str, str]
    problem: str | None = None
    receivers: dict[str, Connector] = field(default_factory=dict)


def _receiver_names(plans: Iterable[Plan]) -> list[str]:
    """Connectors named by the flows (sources and targets), in first-use order."""
    names: list[str] = []
    for plan in plans:
        names.append(plan.source.connector)
        for route in plan.routes:
            names.extend([route.connector] if route.connector else [])
            names.extend(ens.connector for ens in route.ensure)
    return list(dict.fromkeys(names))


class HookServer:
    """The receivers of every tenant served, the dispatcher and the scheduler, on one port.
    ``config``: the process's own settings (the status page's token and language); each
    tenant's connectors get the tenant's."""

    def __init__(self, served: Iterable[ServedTenant], *, config: Mapping[str, str],
                 state: str, **listen: Unpack[Listen]):
        try:    # the `server` extra: the one-shop commands and the demo run without it
            from hexaflow.serve_http import HTTPServer, WebApp
            from hexaflow.serve_metrics import ServeMetrics
        except ImportError as exc:
            raise FlowError(f"hexaflow serve needs its HTTP server packages ({exc.name} is not "
                            f"installed): {SERVER_EXTRA}") from None
        host, port = listen.get("host", "127.0.0.1"), listen.get("port", 0)
        self.tenants = {t.name: t for t in served}
        if not self.tenants:
            raise FlowError("a serve needs at least one tenant to serve")
        if state == ":memory:":
            raise FlowError("hexaflow serve needs a state file, not :memory: (its threads each "
                            "open their own connection): set HEXAFLOW_STATE or --state to a file "
                            "path, e.g. .hexaflow/state.db")
        _check_state(state)
        self.config, self.state = dict(config), state
        # Connectors that receive, created now so that a missing setting is reported at start,
        # not at the first delivery. Instances are shared by the request threads: receive() is
        # pure (no I/O, no shared mutable state).
        self._connectors: dict[str, Connectors] = {}
        for tenant in self.tenants.values():
            if tenant.problem is None:
                self._open_receivers(tenant)
        served_plans = {t.name: t.plans for t in self.tenants.values() if t.problem is None}
        self.queue_mode = listen.get("dispatch", "local") == "queue"
        if self.queue_mode:
            if not is_server_url(state):
                raise FlowError("--dispatch queue needs a PostgreSQL state store (HEXAFLOW_STATE="
                                "postgresql://…): the jobs live in it")
            from hexaflow.queue import QueueDispatcher
            self.dispatcher: Any = QueueDispatcher(served_plans, state_path=state)
        else:
            self.dispatcher = Dispatcher(served_plans, state_path=state,
                                         config_for=lambda name: self.tenants[name].config)
        self.scheduler = Scheduler(self.dispatcher, listen.get("interval", 0.0))
        # The read-only status page (docs/status-page.md); off without HEXAFLOW_ADMIN_TOKEN.
        self.status_page = StatusPage(config=self.config, state=state, tenants={
            t.name: {p.name: (p.source.connector, p.source.resource) for p in t.plans}
            for t in self.tenants.values()})
        self.max_body = MAX_BODY
        self.metrics = ServeMetrics(self)
        try:
            self.http = HTTPServer(WebApp(self), host, port)
        except OSError as exc:
            self._close_connectors()
            raise FlowError(_listen_error(host, port, exc)) from None

    @classmethod
    def single(cls, plans: Iterable[Plan], *, tenant: str, config: Mapping[str, str],
               state: str, **listen: Unpack[Listen]) -> "HookServer":
        """A serve of one tenant whose connectors use ``config`` (the process's)."""
        return cls([ServedTenant(tenant, list(plans), config)], config=config, state=state,
                   **listen)

    def _open_receivers(self, tenant: ServedTenant) -> None:
        base_dir = tenant.plans[0].base_dir if tenant.plans else Path(".")
        connectors = self._connectors[tenant.name] = Connectors(tenant.name, base_dir,
                                                                dict(tenant.config))
        for name in _receiver_names(tenant.plans):
            cls = get_connector(name)
            if cls is None or not cls.can_receive():
                continue
            try:
                tenant.receivers[name] = connectors.get(name)
            except (ConnectorError, FlowError) as exc:
                if len(self.tenants) == 1:
                    self._close_connectors()
                    raise
                tenant.problem = f"its {name} connector cannot be set up: {exc}"
                log.error("serve: tenant %s is not served: %s", tenant.name, tenant.problem,
                          extra={"tenant": tenant.name})
                tenant.receivers.clear()
                return

    def _close_connectors(self) -> None:
        for connectors in self._connectors.values():
            connectors.close()
        self._connectors.clear()

    # -- what the pages and tests read ----------------------------------------------------
    @property
    def tenant(self) -> str:
        """The tenant of ``/hooks/<connector>``: the only one, else the first by name."""
        return min(self.tenants)

    @property
    def plans(self) -> list[Plan]:
        """The flows of ``tenant`` (the only one, in a one-shop serve)."""
        return self.tenants[self.tenant].plans

    @property
    def receivers(self) -> dict[str, Connector]:
        return self.tenants[self.tenant].receivers

    def tenant_names(self) -> list[str]:
        """The tenants this serve holds (/metrics reports each)."""
        return sorted(self.tenants)

    @property
    def url(self) -> str:
        host, port = self.http.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def hook_url(self, connector: str, *, with_tenant: bool = False,
                 tenant: str | None = None) -> str:
        """Where ``connector``'s deliveries go: /hooks/<connector>, or with the tenant in the
        path (/hooks/<tenant>/<connector>, the form many shops on one service need)."""
        if with_tenant or tenant is not None:
            return f"{self.url}/hooks/{tenant or self.tenant}/{connector}"
        return f"{self.url}/hooks/{connector}"

    def start(self) -> "HookServer":
        self._recover()
        self.dispatcher.start()
        self.http.start()
        self.scheduler.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking requests, then let the runs in progress finish (bounded)."""
        self.scheduler.stop()
        self.http.stop()
        self.dispatcher.stop(timeout)
        self._close_connectors()

    def _recover(self) -> None:
        # Events acknowledged before a crash but not yet run: ask for their runs again.
        store = open_store(self.state)
        try:
            pending = {name: store.inbox(name, pending=True) for name, tenant in self.tenants.items()
                       if tenant.problem is None}
        finally:
            store.close()
        for name, rows in pending.items():
            for source in {(row["connector"], row["resource"]) for row in rows}:
                self.dispatcher.request_source(name, *source)

    # -- the request path -----------------------------------------------------------------
    def handle_hook(self, tenant_name: str | None, name: str, raw_body: bytes,
                    headers: Mapping[str, str]) -> tuple[int, Any]:
        """One delivery to ``/hooks/<tenant>/<connector>`` (``tenant_name`` None: the path
        named no tenant, which only a one-tenant serve accepts)."""
        if tenant_name is None and len(self.tenants) > 1:
            return 404, {"error": f"this serve holds several tenants: POST /hooks/<tenant>/{name} "
                                  f"(tenants: {', '.join(self.tenant_names())})"}
        tenant = self.tenants.get(tenant_name or self.tenant)
        if tenant is None:
            return 404, {"error": f"no tenant {tenant_name!r} here"
                                  + (f"; this serve is for tenant {self.tenant!r}"
                                     if len(self.tenants) == 1 else "")}
        if tenant.problem is not None:
            # Not stored: the sender retries, and the scheduler catches up once it is fixed.
            return 503, {"error": f"tenant {tenant.name} is not served now (its configuration "
                                  f"is broken; see the serve log)"}
        token = CURRENT_TENANT.set(tenant.name)
        try:
            return self._receive(tenant, name, raw_body, headers)
        finally:
            CURRENT_TENANT.reset(token)

    def _receive(self, tenant: ServedTenant, name: str, raw_body: bytes,
                 headers: Mapping[str, str]) -> tuple[int, Any]:
        connector = tenant.receivers.get(name)
        if connector is None:
            return 404, {"error": f"no receiver for {name!r}; known: {sorted(tenant.receivers)}"}
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
                    if not self._first_delivery(store, tenant.name, name, received):
                        return received.status, received.body
                    for event in received.events:
                        if not self.dispatcher.flows_reading(tenant.name, name, event.resource):
                            continue            # no flow reads it: nothing would handle the row
                        if store.put_inbox(tenant.name, name, event.resource, event.record_id,
                                           event.version):
                            sources.add(event.resource)
                    if received.results:
                        apply_async_results(store, tenant.name, name, received.results,
                                            report=lambda line: log.warning("serve: %s", line))
                    # A result can overtake the run that sent the document (it records the
                    # target's ref just after the send returns): nothing to apply it to yet.
                    unmatched = not all(store.has_target_ref(tenant.name, name, r.target_ref)
                                        for r in received.results + received.to_confirm)
                    if self.queue_mode:       # the jobs commit with the inbox rows, or neither
                        for resource in sources:
                            self.dispatcher.request_source(tenant.name, name, resource, store=store)
                        sources = set()
            finally:
                store.close()
        # Only a new event asks for a run: a duplicate delivery was already asked for.
        for resource in sources:
            self.dispatcher.request_source(tenant.name, name, resource)
        if unmatched or received.to_confirm:
            self._poll_soon(tenant.name, name, received.to_confirm, unmatched)
        return received.status, received.body

    def _poll_soon(self, tenant: str, name: str, to_confirm: list[AsyncResult],
                   unmatched: bool) -> None:
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
        for flow in self.dispatcher.flows_writing(tenant, name):
            self.dispatcher.request(tenant, flow, delay=delay)

    def _first_delivery(self, store: StateStore, tenant: str, name: str,
                        received: Received) -> bool:
        """Keep the delivery's digest in the inbox; False when it was seen before (a replay,
        or the sender's retry of a delivery already applied): it is then acknowledged and
        nothing in it is applied."""
        if received.digest is None:
            return True
        if store.put_inbox(tenant, name, DELIVERY_DIGESTS, received.digest, None,
                           handled=True):
            return True
        log.warning("serve: a %s delivery seen before (a replay, or a retry of one already "
                    "applied) was acknowledged; nothing in it was applied", name)
        return False

    def health(self) -> dict[str, Any]:
        pending = self.dispatcher.pending()
        answer: dict[str, Any] = {
            "ok": True, "tenant": self.tenant, "runs": self.dispatcher.runs,
            "pending": [flow for tenant, flow in pending if tenant == self.tenant],
            "hooks": sorted(self.receivers)}
        if len(self.tenants) > 1:
            answer["tenants"] = {
                name: {"hooks": sorted(t.receivers), "problem": t.problem,
                       "pending": [flow for tenant, flow in pending if tenant == name]}
                for name, t in sorted(self.tenants.items())}
        return answer


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
    tenants: str | None          # the tenants folder (--tenants; default HEXAFLOW_TENANTS)
    dispatch: str | None         # local (runs in this process) or queue (workers run them)


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
            "tenant": record_tenant(record, self.tenant), "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def record_tenant(record: logging.LogRecord, default: str) -> str:
    """The tenant a log line is about: the record's own (``extra={"tenant": ...}``), else the
    one whose work the thread does, else the serve's."""
    return getattr(record, "tenant", None) or CURRENT_TENANT.get() or default


class _TenantText(logging.Formatter):
    """Text lines with the tenant, for a serve of several."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tenant = record_tenant(record, "")
        return line.replace(" serve: ", f" serve: [{tenant}] ", 1) if tenant else line


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
    text = _TenantText if tenant == "-" else logging.Formatter
    handler.setFormatter(JsonLogFormatter(tenant) if log_format == "json" else
                         text("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def served_tenants(paths: Iterable[str], tenants_dir: str | None, tenant: str | None,
                   err: TextIO) -> list[ServedTenant]:
    """What a serve holds: the flows in ``paths`` for the one tenant, or every tenant of the
    tenants folder with its own flows and configuration (a tenant that cannot be loaded is
    reported and held with its problem, so that the others are still served)."""
    from hexaflow.tenants import TenantError, select_tenants
    chosen, skipped = select_tenants(tenants_dir, tenant)
    for line in skipped:
        print(f"warning: {line}", file=err)
    if not chosen[0].in_tenants_folder:
        if not paths:
            raise FlowError("name the flows to serve (e.g. hexaflow serve mappings/), or a "
                            "tenants folder with --tenants")
        return [ServedTenant(chosen[0].name, load_flows(paths), chosen[0].config())]
    served = []
    for one in chosen:
        try:
            served.append(ServedTenant(one.name, load_flows([str(one.folder)]), one.config()))
            for warning in one.warnings:
                print(f"warning: tenant {one.name}: {warning}", file=err)
        except (FlowError, TenantError) as exc:
            for problem in exc.problems:
                print(problem.text(), file=err)
            print(f"error: tenant {one.name} is not served: {exc}", file=err)
            served.append(ServedTenant(one.name, [], {}, problem=str(exc)))
    if all(t.problem is not None for t in served):
        raise FlowError("no tenant can be served: fix the errors above")
    return served


def serve_command(paths: Iterable[str], *, tenant: str | None = None, state: str | None = None,
                  **options: Unpack[ServeOptions]) -> int:
    host, port, interval = options["host"], options["port"], options["interval"]
    out, err = options.get("out") or sys.stdout, options.get("err") or sys.stderr
    try:
        served = served_tenants(paths, options.get("tenants"), tenant, err)
        _setup_logging(served[0].name if len(served) == 1 else "-",
                       log_format_of(options.get("log_format")), err)
        server = HookServer(served, config=environment_config(),
                            state=default_state_path(state), host=host, port=port,
                            interval=interval, dispatch=options.get("dispatch") or "local")
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
    _print_endpoints(server, interval, out)
    stop.wait()
    print("hexaflow serve: stopping (waiting for the runs in progress)", file=out)
    out.flush()
    server.stop()
    print("hexaflow serve: stopped", file=out)
    return EXIT_OK


def _print_endpoints(server: HookServer, interval: float, out: TextIO) -> None:
    if len(server.tenants) == 1:
        print(f"hexaflow serve: listening on {server.url} (tenant {server.tenant}; flows: "
              f"{', '.join(p.name for p in server.plans)})", file=out)
        for name in sorted(server.receivers):
            print(f"  POST {server.hook_url(name)}   (webhooks / callbacks of {name}; also "
                  f"{server.hook_url(name, with_tenant=True)})", file=out)
    else:
        print(f"hexaflow serve: listening on {server.url} ({len(server.tenants)} tenants)", file=out)
        for name, tenant in sorted(server.tenants.items()):
            if tenant.problem is not None:
                print(f"  tenant {name}: NOT SERVED ({tenant.problem})", file=out)
                continue
            print(f"  tenant {name}: flows {', '.join(p.name for p in tenant.plans)}", file=out)
            for hook in sorted(tenant.receivers):
                print(f"    POST {server.hook_url(hook, tenant=name)}", file=out)
    print(f"  GET  {server.url}/health", file=out)
    print(f"  GET  {server.url}/metrics   (Prometheus)", file=out)
    print(f"  GET  {server.url}/status   " + ("(status page; log in with HEXAFLOW_ADMIN_TOKEN)"
          if server.status_page.enabled else "(status page off: set HEXAFLOW_ADMIN_TOKEN)"), file=out)
    print("  scheduled runs: " + (f"every {interval:g} s" if interval > 0 else "off"), file=out)
    out.flush()
