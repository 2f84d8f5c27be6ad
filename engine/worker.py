"""``hexaflow worker``: runs flow jobs from the queue in the PostgreSQL state store
(docs/workers.md). Every worker holds the same flows (a tenants folder, or the flows named);
any number of them, on any number of machines, share the jobs."""
from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, Iterable

from hexaflow.environment import worker_timing
from hexaflow.errors import FlowError, StateError

log = logging.getLogger("hexaflow.worker")
EXIT_OK, EXIT_CONFIG = 0, 1


def worker_command(paths: Iterable[str], options: dict[str, Any]) -> int:
    """Options: tenants_dir, tenant, state_path, concurrency, interval, log_format."""
    from hexaflow import queue
    from hexaflow.serve import _setup_logging, log_format_of
    from hexaflow.state import is_server_url, state_path
    err = sys.stderr
    try:
        state = state_path(options.get("state_path"))
        if not is_server_url(state):
            raise FlowError(f"hexaflow worker needs a PostgreSQL state store (HEXAFLOW_STATE="
                            f"postgresql://…; it is {state}): the job queue lives in it")
        tenants = queue.worker_tenants(list(paths), options.get("tenants_dir"), options.get("tenant"))
        if not tenants:
            raise FlowError("no tenant can be run: fix the errors above")
        _setup_logging(next(iter(tenants)) if len(tenants) == 1 else "-",
                       log_format_of(options.get("log_format")), err)
        worker_timing()                # a bad number stops the worker at start
        queue.ensure_schema(state)
        app = queue.make_app(state, float(options.get("interval") or 0))
    except (FlowError, StateError) as exc:
        for problem in getattr(exc, "problems", []):
            print(problem.text(), file=err)
        print(f"error: {exc}", file=err)
        return EXIT_CONFIG
    runtime = queue.Runtime(state, tenants, app=app)
    queue.RUNTIME = runtime
    name = f"hexaflow-worker:{socket.gethostname()}:{os.getpid()}"
    heartbeat, stalled = worker_timing()
    log.info("worker %s: %d tenant(s), %d flow(s); concurrency %d", name, len(tenants),
             sum(len(t.plans) for t in tenants.values()), options.get("concurrency") or 4)
    try:
        with app.open():
            queue.schedule_all(app, tenants)     # catch up on what changed while none ran
        app.run_worker(queues=[queue.QUEUE], name=name,
                       concurrency=max(1, int(options.get("concurrency") or 4)),
                       update_heartbeat_interval=heartbeat, stalled_worker_timeout=stalled,
                       delete_jobs="successful", install_signal_handlers=True)
    finally:
        runtime.close()
        queue.RUNTIME = None
    return EXIT_OK
