"""The ``hexaflow`` command line.

Commands import their machinery lazily so that ``hexaflow --help`` stays close to bare Python
start-up. Exit codes are a contract (docs/cli.md): validate 0/1; run 0/1/2; test 0/1.
"""
from __future__ import annotations

import os
import sys

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
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib
            module, attr, _ = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

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
def validate(paths: tuple[str, ...], fmt: str, strict: bool) -> None:
    """Check flow files (or every flow in folders): schema, expressions, references, coverage."""
    from hexaflow.validate import validate_paths, render_report
    report = validate_paths(paths)
    click.echo(render_report(report, fmt), nl=False)
    sys.exit(EXIT_INVALID if report.failed(strict) else EXIT_OK)


@main.command()
@click.argument("flow", type=click.Path())
@click.option("--dry-run", is_flag=True, help="Print the payloads that would be sent (JSON); write nothing.")
@click.option("--limit", type=int, default=None, help="Read at most N records.")
@click.option("--tenant", default=None, help="Tenant id (default: HEXAFLOW_TENANT or 'default').")
@click.option("--state", "state_path", default=None, help="State store (default: HEXAFLOW_STATE).")
def run(flow: str, dry_run: bool, limit: int | None, tenant: str | None,
        state_path: str | None) -> None:
    """Run a flow: read records, map them, write the documents not yet written."""
    from hexaflow.runner import run_command
    sys.exit(run_command(flow, dry_run=dry_run, limit=limit, tenant=tenant, state_path=state_path))


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


if __name__ == "__main__":  # pragma: no cover
    main()
