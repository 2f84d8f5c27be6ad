"""``hexaflow check``: the settings of the Haravan ↔ MISA flows that name something in the MISA
company (accounts, service items, warehouses, the bank account), against what the tenant's
company holds.

This module knows the settings (mappings/settings.yaml, warehouses.yaml, account_presets.yaml);
the MISA connector says what the company holds (``MisaConnector.references``); the comparison
and the report are hexaflow.check's. The effective accounts are the orders flow's own lets
``preset`` and ``accounts`` (mappings/shared/accounts.yaml), evaluated here, so the rule that
merges a preset and the company's accounts is written once. Loaded lazily by the CLI.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import click

from hexaflow.check import EXIT_OK, EXIT_PROBLEMS, Finding, SettingsFile, Wanted, compare, render
from hexaflow.connector import ConnectorError
from hexaflow.errors import FlowError, HexaflowError
from hexaflow.plan import Plan

FLOW = "orders.yaml"          # the flow whose settings and lets name every MISA thing checked
TARGET = "misa"
# The service items the orders flow puts on document lines (settings.yaml orders.*).
ITEM_SETTINGS = ("shipping_item", "allowance_item", "fee_item", "fallback_item")


def find_flow(path: str) -> Path:
    """The orders flow: PATH itself, PATH/orders.yaml or PATH/mappings/orders.yaml."""
    given = Path(path)
    if given.is_file():
        return given
    for candidate in (given / FLOW, given / "mappings" / FLOW):
        if candidate.is_file():
            return candidate
    raise FlowError(f"no {FLOW} in {path} or {given / 'mappings'}: `hexaflow check` reads the "
                    f"settings through the orders flow (name the flow file or its folder)")


class Settings:
    """The project's tables with their files, as the flow declared them."""

    def __init__(self, plan: Plan):
        self.plan = plan
        lookups = plan.spec.data.get("lookups") or {}
        self.files = {name: spec if isinstance(spec, str) else spec.get("file")
                      for name, spec in lookups.items()}
        self._opened: dict[str, SettingsFile] = {}

    def file(self, lookup: str) -> SettingsFile:
        if lookup not in self._opened:
            name = self.files.get(lookup) or f"{lookup}.yaml"
            display = str(Path(self.plan.spec.display).parent / name)   # as the flow shows it
            self._opened[lookup] = SettingsFile(self.plan.base_dir / name, display)
        return self._opened[lookup]

    def lookup_of(self, file_name: str) -> str | None:
        return next((name for name, file in self.files.items()
                     if file and Path(file).name == file_name), None)


def wanted_accounts(settings: Settings, findings: list[Finding]) -> list[Wanted]:
    """Each effective account, where it is set: the company's override in settings.yaml, else
    the preset's line in account_presets.yaml. An unknown preset is a finding instead."""
    plan = settings.plan
    scope = plan.scope({})
    lets = dict(plan.lets)
    config = plan.tables.get("settings") or {}
    if "preset" not in lets or "accounts" not in lets:
        raise FlowError(f"{plan.spec.display}: the flow has no lets `preset` and `accounts` "
                        f"(include shared/accounts.yaml)")
    try:
        preset = plan.let_value("preset", lets["preset"], scope)
        scope["preset"] = preset
        accounts = plan.let_value("accounts", lets["accounts"], scope)
    except HexaflowError as exc:
        known = ", ".join(sorted(plan.tables.get("account_presets") or {}))
        findings.append(Finding("account_preset", settings.file("settings").where("account_preset"),
                                "account_preset", str(config.get("account_preset")),
                                getattr(exc, "reason", exc.message),
                                f"set account_preset to one of {known}"))
        return []
    preset_name = str(config.get("account_preset"))
    overrides = config.get("accounts") or {}
    out = []
    for name, code in sorted((accounts or {}).items()):
        if name in overrides:
            where = settings.file("settings").where("accounts", name)
            setting = f"accounts.{name}"
        else:
            where = settings.file("account_presets").where(preset_name, "accounts", name)
            setting = f"accounts.{name} (preset {preset_name})"
        out.append(Wanted("account", str(code), setting, where, _account_fix(name)))
    return out


def _account_fix(name: str) -> Callable[[str], str]:
    def fix(reason: str) -> str:
        if "sub-accounts" in reason or "parent" in reason:
            return (f"set accounts.{name} in settings.yaml to the sub-account this company "
                    f"posts to")
        if "inactive" in reason:
            return f"make it active again in AMIS, or set accounts.{name} in settings.yaml"
        return (f"add it to the chart in AMIS (Danh mục → Hệ thống tài khoản), or set "
                f"accounts.{name} in settings.yaml to an account the chart has")
    return fix


def wanted_items(settings: Settings) -> list[Wanted]:
    orders = (settings.plan.tables.get("settings") or {}).get("orders") or {}
    out = []
    for name in ITEM_SETTINGS:
        value = orders.get(name)
        code = value.get("code") if isinstance(value, dict) else value
        if not code:          # fallback_item: null is a choice (lines without SKU are refused)
            continue
        path = ("orders", name, "code") if isinstance(value, dict) else ("orders", name)
        setting = ".".join(path)
        out.append(Wanted("item", str(code), setting, settings.file("settings").where(*path),
                          _item_fix(setting)))
    return out


def _fix(add: str, change: str) -> Callable[[str], str]:
    """The fix for a missing or inactive entry: ``add`` it in AMIS, or ``change`` the setting."""
    def fix(reason: str) -> str:
        if "inactive" in reason:
            return f"make it active again in AMIS, or {change}"
        return f"{add}, or {change}"
    return fix


def _item_fix(setting: str) -> Callable[[str], str]:
    return _fix("create the service item in AMIS (Danh mục → Vật tư hàng hóa)",
                f"set {setting} in settings.yaml to an item the company has")


def wanted_stocks(settings: Settings) -> list[Wanted]:
    lookup = settings.lookup_of("warehouses.yaml")
    if lookup is None:
        return []
    file = settings.file(lookup)
    rows = file.data if isinstance(file.data, list) else []
    return [Wanted("stock", str(row["stock_code"]), f"warehouses.yaml row {number}",
                   file.where(number - 1, "stock_code"),
                   _fix("create the warehouse in AMIS (Danh mục → Kho)",
                        "correct stock_code in warehouses.yaml to the warehouse's code (Mã kho)"))
            for number, row in enumerate(rows, 1)
            if isinstance(row, dict) and row.get("stock_code") is not None]


def wanted_bank_account(settings: Settings) -> list[Wanted]:
    bank = (settings.plan.tables.get("settings") or {}).get("bank_account") or {}
    number = bank.get("number") if isinstance(bank, dict) else None
    if not number:
        return []
    return [Wanted("bank_account", str(number), "bank_account.number",
                   settings.file("settings").where("bank_account", "number"),
                   _fix("add the account in AMIS (Danh mục → Tài khoản ngân hàng)",
                        "set bank_account.number in settings.yaml to one of the company's bank "
                        "accounts"))]


def check_project(plan: Plan, tenant: str, connect: Callable[[], Any]) -> tuple[list[Finding], int]:
    """The findings and how many settings were checked. ``connect`` gives the MISA connector
    (asked only when there is something to compare)."""
    settings = Settings(plan)
    findings: list[Finding] = []
    wanted = (wanted_accounts(settings, findings) + wanted_items(settings)
              + wanted_stocks(settings) + wanted_bank_account(settings))
    findings += compare(connect(), wanted) if wanted else []
    findings.sort(key=lambda f: (f.where.file, f.where.line, f.where.col))
    return findings, len(wanted) + (1 if any(f.kind == "account_preset" for f in findings) else 0)


def check_command(path: str | None, tenant: str | None, fmt: str, tenants: str | None = None) -> int:
    from hexaflow.runcontext import Connectors
    from hexaflow.runner import load_plan
    from hexaflow.tenants import one_tenant
    try:
        one = one_tenant(tenants, tenant)
        folder = path or (str(one.folder) if one.in_tenants_folder else ".")
        plan = load_plan(find_flow(folder))
        config = one.config()
    except FlowError as exc:
        for problem in exc.problems:
            click.echo(problem.text(), err=True)
        click.echo(f"error: {exc}", err=True)
        return EXIT_PROBLEMS
    connectors = Connectors(one.name, plan.base_dir, config)
    try:
        findings, checked = check_project(plan, one.name, lambda: connectors.get(TARGET))
    except (HexaflowError, ConnectorError) as exc:      # not configured, cannot connect
        click.echo(f"error: {exc}", err=True)
        return EXIT_PROBLEMS
    finally:
        connectors.close()
    click.echo(render(findings, checked, fmt), nl=False)
    return EXIT_PROBLEMS if findings else EXIT_OK


@click.command()
@click.argument("path", required=False, type=click.Path())
@click.option("--tenant", default=None, help="Tenant id (default: HEXAFLOW_TENANT or 'default').")
@click.option("--tenants", "tenants_dir", default=None, type=click.Path(),
              help="A tenants folder (default: HEXAFLOW_TENANTS): check the --tenant's own settings.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: one line per problem (file:line:col: setting: problem (fix)); json: for tools.")
def check(path: str | None, tenant: str | None, tenants_dir: str | None, fmt: str) -> None:
    """Compare the settings with the tenant's MISA company: accounts, items, warehouses, bank account."""
    sys.exit(check_command(path, tenant, fmt, tenants_dir))
