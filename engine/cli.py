"""The ``hexaflow`` command line.

Commands import their machinery lazily so that ``hexaflow --help`` stays close to bare Python
start-up. Exit codes are a contract (docs/cli.md): validate 0/1; run 0/1/2; test 0/1; check 0/1.
"""
from __future__ import annotations

import functools
import sys
from typing import Any

import click

EXIT_OK, EXIT_INVALID, EXIT_RECORDS_FAILED = 0, 1, 2


class LazyGroup(click.Group):
    """A group whose product commands live in other packages and load on first use."""

    lazy: dict[str, tuple[str, str, str]] = {
        # name: (module, attribute, short help shown by --help without importing the module)
        "sandbox": ("hexaflow.connectors.commands", "sandbox",
                    "Run the connectors' sandboxes in the foreground."),
        "demo": ("hexaflow.connectors.commands", "demo",
                 "Start the sandboxes with demo data, run every flow, show the result."),
        "check": ("hexaflow.connectors.check", "check",
                  "Compare the settings with what the tenant's target systems hold (accounts, items, ...)."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib
            module, attr, _ = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> object:
        """Any hexaflow error a command lets through is one ``error:`` line and exit 1, never
        a traceback (commands report most errors themselves, in their own words)."""
        from hexaflow.errors import HexaflowError
        try:
            return super().invoke(ctx)
        except HexaflowError as exc:
            hint = f" (hint: {exc.hint})" if exc.hint else ""
            click.echo(f"error: {exc}{hint}", err=True)
            sys.exit(EXIT_INVALID)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][2]))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=formatter.width - 20)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hexaflow")
def main() -> None:
    """hexaflow: declarative sync flows between systems, through pluggable connectors."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: one line per problem (file:line:col: severity: message); json: for CI.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--cache", "use_cache", is_flag=True,
              help="Keep results in .hexaflow/cache (or $HEXAFLOW_CACHE_DIR); files whose "
                   "inputs did not change are not validated again.")
def validate(paths: tuple[str, ...], fmt: str, strict: bool, use_cache: bool) -> None:
    """Check flow files (or every flow in folders): schema, expressions, references, coverage."""
    from hexaflow.validate import validate_paths, render_report
    cache = None
    if use_cache:
        from hexaflow.cache import ValidationCache
        cache = ValidationCache()
    report = validate_paths(paths, cache)
    from hexaflow.keychanges import key_change_warnings
    report.problems += key_change_warnings(report.flows)     # against the state store, if any
    click.echo(render_report(report, fmt), nl=False)
    sys.exit(EXIT_INVALID if report.failed(strict) else EXIT_OK)


@main.command()
@click.argument("flow", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Print the payloads that would be sent (JSON); write nothing.")
@click.option("--limit", type=int, default=None, help="Read at most N records.")
@click.option("--tenant", default=None, help="Tenant id (default: HEXAFLOW_TENANT or 'default').")
@click.option("--state", "state_path", default=None, help="State store (default: HEXAFLOW_STATE).")
@click.option("--tenants", "tenants_dir", default=None, type=click.Path(),
              help="A tenants folder: one subfolder per shop (default: HEXAFLOW_TENANTS).")
def run(flow: str, dry_run: bool, limit: int | None, tenant: str | None,
        state_path: str | None, tenants_dir: str | None) -> None:
    """Run a flow: read records, map them, write the documents not yet written (for each
    tenant of a tenants folder: its own FLOW file)."""
    from hexaflow.run_cli import run_command
    sys.exit(run_command(flow, dry_run=dry_run, limit=limit, tenant=tenant, state_path=state_path,
                         tenants=tenants_dir))


@main.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-k", "name_filter", default=None, help="Only cases whose name contains this text.")
def test_cmd(paths: tuple[str, ...], name_filter: str | None) -> None:
    """Run the tests: cases in flow files and show a diff for each failure."""
    from hexaflow.flowtest import test_command
    sys.exit(test_command(paths, name_filter))


@main.command()
def schema() -> None:
    """Print the flow JSON Schema (for editors and CI)."""
    from hexaflow.spec import schema_text
    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("directory", type=click.Path())
@click.option("--force", is_flag=True,
              help="Write into a folder that is not empty, replacing files with the same names.")
@click.option("--tenants", "tenants_dir", default=None, type=click.Path(file_okay=False),
              help="Add the tenant DIRECTORY (a name) to this tenants folder, with a tenant.yaml.")
def init(directory: str, force: bool, tenants_dir: str | None) -> None:
    """Create a project for one shop: flows, tables, tests, settings, CI, editor schema (with
    --tenants DIR: the tenant folder DIR/DIRECTORY)."""
    from hexaflow.scaffold import init_command
    sys.exit(init_command(directory, force=force, tenants=tenants_dir))


def _state_faults_are_errors(fn):
    """A command using the state store: the file can turn out damaged or read-only at any
    query, not only when it is opened; that is an error line naming the file and the fix."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from hexaflow.state import StateError, state_faults
        try:
            with state_faults(kwargs.get("state_path")):
                return fn(*args, **kwargs)
        except StateError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_INVALID)
    return wrapper


@main.command()
@click.argument("flow", type=click.Path())
@click.option("--record", "record_file", type=click.Path(dir_okay=False), default=None,
              help="A JSON or YAML file holding the record (or {...} as the API returns it).")
@click.option("--id", "record_id", default=None, metavar="ID",
              help="Fetch the record from the flow's source by its id.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: for people; json: one object, for tools.")
@click.option("--tenant", default=None, help="Tenant id (default: HEXAFLOW_TENANT or 'default').")
@click.option("--state", "state_path", default=None, help="State store (default: HEXAFLOW_STATE); read only.")
@_state_faults_are_errors
def explain(flow: str, record_file: str | None, record_id: str | None, fmt: str,
            tenant: str | None, state_path: str | None) -> None:
    """Why one record produces its documents: lets, conditions, keys, ledger decisions, payloads."""
    from hexaflow.explain import ExplainRequest, explain_command
    sys.exit(explain_command(ExplainRequest(flow, record_file, record_id, tenant, state_path, fmt)))


def _state_options(fn):
    fn = _state_faults_are_errors(fn)
    fn = click.option("--tenant", default=None,
                      help="Tenant id (default: HEXAFLOW_TENANT or 'default'; with --tenants: "
                           "every tenant).")(fn)
    fn = click.option("--tenants", "tenants_dir", default=None, type=click.Path(),
                      help="A tenants folder: one subfolder per shop (default: HEXAFLOW_TENANTS).")(fn)
    fn = click.option("--state", "state_path", default=None,
                      help="State store (default: HEXAFLOW_STATE).")(fn)
    return fn


def _fail(exc: Exception) -> None:
    for problem in getattr(exc, "problems", []) or []:
        click.echo(problem.text(), err=True)
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_INVALID)


def _open(state_path: str | None, tenant: str | None, tenants_dir: str | None = None):
    """The state store and the tenants a command works for (warnings printed)."""
    from hexaflow.errors import FlowError
    from hexaflow.state import StateError, open_store
    from hexaflow.tenants import select_tenants
    try:
        chosen, skipped = select_tenants(tenants_dir, tenant)
        store = open_store(state_path)
    except (StateError, FlowError) as exc:
        _fail(exc)
    for line in skipped:
        click.echo(f"warning: {line}", err=True)
    return store, chosen


def _open_one(state_path: str | None, tenant: str | None, tenants_dir: str | None):
    """The state store and the one tenant a command needs."""
    from hexaflow.errors import FlowError
    from hexaflow.state import StateError, open_store
    from hexaflow.tenants import one_tenant
    try:
        chosen = one_tenant(tenants_dir, tenant)
        return open_store(state_path), chosen
    except (StateError, FlowError) as exc:
        _fail(exc)
        raise     # not reached: _fail exits


def _each(tenants: list, text) -> None:
    """Print ``text(tenant name)`` for each tenant, under its name when in a tenants folder."""
    for one in tenants:
        if one.in_tenants_folder:
            click.echo(f"== tenant {one.name}")
        click.echo(text(one.name), nl=False)


@main.command()
@click.argument("flow", type=click.Path())
@_state_options
def adopt(flow: str, state_path: str | None, tenant: str | None, tenants_dir: str | None) -> None:
    """Rebuild FLOW's ledger from what its targets hold (after the state store was lost)."""
    from hexaflow.adopt import adopt as adopt_flow
    from hexaflow.connector import ConnectorError
    from hexaflow.runner import Connectors, FlowError, load_plan
    from hexaflow.tenants import flow_of
    store, one = _open_one(state_path, tenant, tenants_dir)
    try:
        plan = load_plan(flow_of(one, flow))
        connectors = Connectors(one.name, plan.base_dir, one.config())
        try:
            summary = adopt_flow(plan, one.name, store, connectors,
                                 lambda line: click.echo(line, err=True))
        finally:
            connectors.close()
    except (FlowError, ConnectorError) as exc:
        for problem in getattr(exc, "problems", []):
            click.echo(problem.text(), err=True)
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(summary.render(), nl=False)


@main.command()
@_state_options
def status(state_path: str | None, tenant: str | None, tenants_dir: str | None) -> None:
    """Per flow: cursor, last run, documents by state, dead letters, conflicts; with a job
    queue in the store, each tenant's jobs and every worker's heartbeat."""
    from hexaflow.reports import status_text, workers_status_text
    store, chosen = _open(state_path, tenant, tenants_dir)
    _each(chosen, lambda name: status_text(store, name))
    click.echo(workers_status_text(store), nl=False)


@main.command()
@click.argument("ref")
@_state_options
def trace(ref: str, state_path: str | None, tenant: str | None, tenants_dir: str | None) -> None:
    """Every document of a record (e.g. an order id) or with a document code, and its history."""
    from hexaflow.reports import trace_text
    store, chosen = _open(state_path, tenant, tenants_dir)
    _each(chosen, lambda name: trace_text(store, name, ref))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8765, show_default=True, help="Port (0: any free port).")
@click.option("--interval", type=float, default=300, show_default=True,
              help="Seconds between scheduled runs of every flow (0: off).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines as text or JSON objects with the tenant (default: "
                   "HEXAFLOW_LOG_FORMAT, else text).")
@click.option("--dispatch", type=click.Choice(["local", "queue"]), default="local", show_default=True,
              help="Who runs the flows: this process, or `hexaflow worker`s through the job "
                   "queue in the PostgreSQL state store.")
@_state_options
def serve(paths: tuple[str, ...], **options: Any) -> None:
    """Receive webhooks and callbacks (POST /hooks/<connector>, or /hooks/<tenant>/<connector>)
    and run flows on a schedule: the flows in PATHS, or every tenant's with --tenants."""
    from hexaflow.serve import serve_command
    sys.exit(serve_command(paths, host=options["host"], port=options["port"], interval=options["interval"],
                           tenant=options["tenant"], state=options["state_path"],
                           log_format=options["log_format"], tenants=options["tenants_dir"],
                           dispatch=options["dispatch"]))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--concurrency", type=int, default=4, show_default=True,
              help="Runs this worker makes at once (each of a different (tenant, flow)).")
@click.option("--interval", type=float, default=300, show_default=True,
              help="Seconds between scheduled runs of every flow (0: off; one schedule for all "
                   "workers).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines as text or JSON objects with the tenant.")
@_state_options
def worker(paths: tuple[str, ...], **options: Any) -> None:
    """Run flow jobs from the queue in the PostgreSQL state store (the flows in PATHS, or every
    tenant's with --tenants); any number of workers on any number of machines."""
    from hexaflow.worker import worker_command
    sys.exit(worker_command(paths, options))


@main.command("tenants")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: one block per tenant; json: for tools.")
@_state_options
def tenants_cmd(fmt: str, state_path: str | None, tenant: str | None, tenants_dir: str | None) -> None:
    """The tenants of a tenants folder with their health: flows, configuration, last runs,
    documents, dead letters (exit 0 when every tenant is ok)."""
    from hexaflow.tenant_report import tenants_report
    store, chosen = _open(state_path, tenant, tenants_dir)
    text, healthy = tenants_report(store, chosen, fmt)
    click.echo(text, nl=False)
    sys.exit(EXIT_OK if healthy else EXIT_INVALID)


@main.group()
def dlq() -> None:
    """Dead letters: records that could not be mapped, documents the target rejected."""


@dlq.command("list")
@click.option("--flow", default=None, help="Only this flow.")
@_state_options
def dlq_list(flow: str | None, state_path: str | None, tenant: str | None,
             tenants_dir: str | None) -> None:
    """List the open dead letters with their reasons."""
    from hexaflow.reports import dlq_list_text
    store, chosen = _open(state_path, tenant, tenants_dir)
    _each(chosen, lambda name: dlq_list_text(store, name, flow))


@dlq.command("show")
@click.argument("letter_id", type=int)
@_state_options
def dlq_show(letter_id: int, state_path: str | None, tenant: str | None,
             tenants_dir: str | None) -> None:
    """Show one dead letter: reason, record and payload."""
    from hexaflow.reports import dlq_show_text
    from hexaflow.runner import FlowError
    store, one = _open_one(state_path, tenant, tenants_dir)
    try:
        click.echo(dlq_show_text(store, one.name, letter_id), nl=False)
    except FlowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)


@dlq.command("drop")
@click.argument("letter_id", type=int)
@_state_options
def dlq_drop(letter_id: int, state_path: str | None, tenant: str | None,
             tenants_dir: str | None) -> None:
    """Close a dead letter without replaying it."""
    from hexaflow.reports import dlq_drop as drop
    from hexaflow.runner import FlowError
    store, one = _open_one(state_path, tenant, tenants_dir)
    try:
        drop(store, one.name, letter_id)
    except FlowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(f"dropped dead letter #{letter_id}")


@dlq.command("replay")
@click.argument("flow", type=click.Path())
@click.option("--id", "ids", type=int, multiple=True,
              help="Only these dead letters (default: all of the flow).")
@_state_options
def dlq_replay(flow: str, ids: tuple[int, ...], state_path: str | None, tenant: str | None,
               tenants_dir: str | None) -> None:
    """Map the dead-lettered records again with the flow as it is now; write each document once."""
    from hexaflow.reports import dlq_replay as replay
    from hexaflow.runner import FlowError
    store, one = _open_one(state_path, tenant, tenants_dir)
    try:
        summary = replay(store, one, flow, list(ids) or None,
                         lambda line: click.echo(line, err=True))
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(problem.text(), err=True)
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(summary.render(), nl=False)
    sys.exit(EXIT_RECORDS_FAILED if summary.failed else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
