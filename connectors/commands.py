"""Product commands that know the concrete systems: ``hexaflow sandbox`` and ``hexaflow demo``.

Loaded lazily by the CLI (see hexaflow.cli.LazyGroup).
"""
from __future__ import annotations

import secrets
import signal
import sys
import threading

import click

from hexaflow.environment import environment_config


def sandbox_credentials() -> dict[str, str]:
    """Credentials from the environment where set (a test or script chooses them), else new ones."""
    environment = environment_config()

    def env(name: str, default: str) -> str:
        return environment.get(name) or default
    return {
        "HARAVAN_TOKEN": env("HARAVAN_TOKEN", "sandbox-" + secrets.token_hex(16)),
        "HARAVAN_WEBHOOK_SECRET": env("HARAVAN_WEBHOOK_SECRET", secrets.token_hex(16)),
        "MISA_APP_ID": env("MISA_APP_ID", "sandbox-app-" + secrets.token_hex(4)),
        "MISA_ACCESS_CODE": env("MISA_ACCESS_CODE", secrets.token_hex(16)),
        "MISA_ORG_COMPANY_CODE": env("MISA_ORG_COMPANY_CODE", "0312345678"),
    }


def start_sandboxes(*, haravan_port: int = 0, misa_port: int = 0, data: str = "demo",
                    orders: int = 200, rate_limit: bool = True, seed: int = 1,
                    credentials: dict[str, str] | None = None, chart: str | None = None):
    """Start both sandboxes on loopback threads; return (haravan_server, misa_server, credentials)."""
    from hexaflow.connectors.haravan.sandbox import HaravanSandbox
    from hexaflow.connectors.misa.sandbox import MisaSandbox
    from hexaflow.connectors.sandbox_server import SandboxServer

    creds = credentials or sandbox_credentials()
    haravan = SandboxServer(HaravanSandbox(
        token=creds["HARAVAN_TOKEN"], webhook_secret=creds["HARAVAN_WEBHOOK_SECRET"],
        data=data, orders=orders, rate_limit=rate_limit, seed=seed), port=haravan_port).start()
    misa = SandboxServer(MisaSandbox(
        app_id=creds["MISA_APP_ID"], access_code=creds["MISA_ACCESS_CODE"],
        org_company_code=creds["MISA_ORG_COMPANY_CODE"], data=data, seed=seed, chart=chart),
        port=misa_port).start()
    return haravan, misa, creds


@click.command()
@click.option("--haravan-port", type=int, default=0, help="Port for the Haravan sandbox (0: any free port).")
@click.option("--misa-port", type=int, default=0, help="Port for the MISA sandbox (0: any free port).")
@click.option("--data", type=click.Choice(["demo", "empty"]), default="demo",
              help="demo: customers, products, stock and orders; empty: only the shop's and company's setup.")
@click.option("--orders", type=int, default=200, show_default=True, help="Number of demo orders.")
@click.option("--rate-limit", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="Haravan's leaky bucket (80 requests, 4/s).")
@click.option("--chart", type=click.Choice(["circular_99_2025", "circular_200_2014",
                                            "circular_133_2016"]), default="circular_99_2025",
              show_default=True, help="The MISA company's chart of accounts (an account preset).")
def sandbox(haravan_port: int, misa_port: int, data: str, orders: int, rate_limit: str,
            chart: str) -> None:
    """Run the Haravan and MISA AMIS sandboxes in the foreground; Ctrl-C stops them."""
    haravan, misa, creds = start_sandboxes(haravan_port=haravan_port, misa_port=misa_port,
                                           data=data, orders=orders, rate_limit=rate_limit == "on",
                                           chart=chart)
    click.echo(f"Haravan sandbox: {haravan.url}")
    click.echo(f"MISA AMIS sandbox: {misa.url}")
    click.echo("Use these settings (sandbox credentials, not secrets of a real shop):")
    click.echo(f"  export HARAVAN_BASE_URL={haravan.url}")
    click.echo(f"  export MISA_BASE_URL={misa.url}")
    environment = environment_config()
    for name, value in creds.items():
        # A value that came from the environment may be real: name it, never print it.
        shown = "<from your environment>" if environment.get(name) else value
        click.echo(f"  export {name}={shown}")
    sys.stdout.flush()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    haravan.stop()
    misa.stop()
    click.echo("sandboxes stopped")


@click.command()
@click.option("--orders", type=int, default=60, show_default=True, help="Number of demo orders.")
def demo(orders: int) -> None:
    """Start both sandboxes with demo data, run every flow, print what was created where."""
    from hexaflow.connectors.demo import run_demo
    sys.exit(run_demo(orders=orders))
