"""Tenants: the shops one hexaflow serves (docs/tenants.md).

A tenants folder holds one subfolder per tenant, laid out as ``hexaflow init`` makes it, with an
optional ``tenant.yaml`` (no secrets) naming where the tenant's secrets come from. Without a
tenants folder the current folder is the single tenant, configured from the process
environment. Every command that works for tenants gets its ``Tenant`` values from
``select_tenants``; a tenant's configuration is read when first asked for, so that one tenant's
broken configuration is that tenant's error, never the others'.
"""
from __future__ import annotations

import re
import stat
import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from hexaflow.connector import ConfigVar
from hexaflow.environment import environment_config, tenant_name, tenants_location
from hexaflow.errors import FlowError
from hexaflow.registry import connector_names, get_connector
from hexaflow.yamlload import SpecSyntaxError, parse_yaml, read_text

TENANT_FILE = "tenant.yaml"
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SECRET_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)")
TENANT_KEYS = ("description", "environment", "secrets")


class TenantError(FlowError):
    """A tenant cannot be used (its folder, tenant.yaml or secrets); the other tenants can."""


def declared_variables() -> dict[str, ConfigVar]:
    """Every variable a registered connector reads, by name."""
    found: dict[str, ConfigVar] = {}
    for name in connector_names():
        cls = get_connector(name)
        for var in getattr(cls, "config_vars", ()) or ():
            found.setdefault(var.name, var)
    return found


@dataclass
class Tenant:
    """One shop. ``folder`` holds its flows and tables; ``config()`` is what its connectors
    are given (TenantError when it cannot be built). ``base`` is None for the single tenant of
    the current folder, whose configuration is the process environment."""
    name: str
    folder: Path
    base: Path | None = None
    environment: Mapping[str, str] | None = None      # the process environment (tests pass one)
    warnings: list[str] = field(default_factory=list)

    @property
    def in_tenants_folder(self) -> bool:
        return self.base is not None

    @cached_property
    def settings(self) -> dict[str, Any]:
        """tenant.yaml as data (description, environment, secrets: empty when there is no
        file); TenantError naming file:line."""
        path = self.folder / TENANT_FILE
        if not path.is_file():
            return {"description": "", "environment": {}, "secrets": None}
        shown = str(path)
        try:
            data, smap = parse_yaml(read_text(path, shown), shown)
        except SpecSyntaxError as exc:
            raise TenantError(f"{exc.file}:{exc.line}:{exc.col}: {exc.message}") from None
        except OSError as exc:
            raise TenantError(f"{shown}: cannot be read ({exc.strerror or exc})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise TenantError(f"{smap.where(())}: tenant.yaml must be a mapping with "
                              f"{', '.join(TENANT_KEYS)}")
        for key in data:
            if key not in TENANT_KEYS:
                raise TenantError(f"{smap.where((key,), key=True)}: unknown key {key!r} in "
                                  f"tenant.yaml; use {', '.join(TENANT_KEYS)}")
        own = data.get("environment") or {}
        if not isinstance(own, dict):
            raise TenantError(f"{smap.where(('environment',))}: environment must be a mapping "
                              f"of variable names to values")
        declared = declared_variables()
        for name, value in own.items():
            where = smap.where(("environment", name), key=True)
            _check_name(name, declared, where)
            if declared[name].secret:
                raise TenantError(f"{where}: {name} is a secret: tenant.yaml is committed; put "
                                  f"it in the tenant's secrets (a file, or env_prefix)")
            if not isinstance(value, str):
                # YAML reads 0301 as the number 193 and 0312345678 without its 0: a code
                # must stay the text written.
                raise TenantError(f"{smap.where(('environment', name))}: {name} must be text: "
                                  f"write it in quotes, e.g. {name}: \"{value}\"")
        secrets = data.get("secrets")
        if secrets is not None and not isinstance(secrets, str) and not (
                isinstance(secrets, dict) and set(secrets) == {"env_prefix"}
                and isinstance(secrets["env_prefix"], str) and secrets["env_prefix"]):
            raise TenantError(f"{smap.where(('secrets',))}: secrets must be a file path or "
                              f"{{env_prefix: PREFIX_}}")
        return {"description": str(data.get("description") or ""),
                "environment": dict(own), "secrets": secrets}

    @property
    def description(self) -> str:
        try:
            return str(self.settings.get("description") or "")
        except TenantError:
            return ""

    def config(self) -> dict[str, str]:
        """The configuration of this tenant's connectors (docs/tenants.md, the order)."""
        process = dict(self.environment) if self.environment is not None else environment_config()
        if not self.in_tenants_folder:
            return process
        declared = declared_variables()
        config = {k: v for k, v in process.items() if not (k in declared and declared[k].secret)}
        config.update(self.settings["environment"])
        config.update(self._secrets(process, declared))
        return config

    def _secrets(self, process: Mapping[str, str], declared: dict[str, ConfigVar]) -> dict[str, str]:
        source = self.settings["secrets"]
        if source is None:
            return {}
        if isinstance(source, dict):
            prefix = source["env_prefix"]
            return {k[len(prefix):]: v for k, v in process.items()
                    if k.startswith(prefix) and k[len(prefix):] in declared}
        path = Path(source).expanduser()
        if not path.is_absolute():
            path = self.folder / path
        if not path.is_file():
            raise TenantError(f"tenant {self.name}: its secrets file {path} (tenant.yaml "
                              f"`secrets:`) does not exist; create it (mode 600) with "
                              f"KEY=VALUE lines")
        if _tracked_by_git(path):
            raise TenantError(f"tenant {self.name}: its secrets file {path} is tracked by git; "
                              f"secrets must never be committed: `git rm --cached` it, rotate "
                              f"the credentials and keep the file outside the repository")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            self.warnings.append(f"its secrets file {path} can be read by other users "
                                 f"(chmod 600 {path})")
        values: dict[str, str] = {}
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise TenantError(f"tenant {self.name}: its secrets file {path} cannot be read "
                              f"({exc})") from None
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            match = _SECRET_LINE.fullmatch(stripped)
            if match is None:     # never echo the line: it may hold a secret
                raise TenantError(f"{path}:{number}: not a KEY=VALUE line")
            name, value = match.group(1), match.group(2).strip()
            _check_name(name, declared, f"{path}:{number}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name] = value
        return values


def _check_name(name: Any, declared: dict[str, ConfigVar], where: str) -> None:
    if not isinstance(name, str) or name not in declared:
        close = [n for n in declared if isinstance(name, str) and n.split("_")[0] == name.split("_")[0]]
        known = ", ".join(sorted(close or declared))
        raise TenantError(f"{where}: {name!r} is not a variable any connector reads; known: {known}")


def _tracked_by_git(path: Path) -> bool:
    """Whether git tracks ``path`` (False where git or a repository is not there)."""
    try:
        done = subprocess.run(["git", "-C", str(path.parent), "ls-files", "--error-unmatch",
                               path.name], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


# --------------------------------------------------------------------------- finding them
def tenants_in(base: Path, environment: Mapping[str, str] | None = None) -> tuple[list[Tenant], list[str]]:
    """The tenants of a tenants folder, by name, and the subfolders that cannot be tenants
    (their names break the rule), as messages."""
    if not base.is_dir():
        raise FlowError(f"tenants folder {base} does not exist or is not a folder (--tenants or "
                        f"HEXAFLOW_TENANTS)")
    found, skipped = [], []
    for child in sorted(base.iterdir(), key=lambda p: p.name):
        if not child.is_dir() or child.name.startswith((".", "_")):
            continue
        if NAME_RULE.fullmatch(child.name) is None:
            skipped.append(f"{child}: not a tenant name (letters, digits, '-', '_', '.'; at "
                           f"most 63, starting with a letter or digit): skipped")
            continue
        found.append(Tenant(child.name, child, base, environment))
    return found, skipped


def select_tenants(tenants_dir: str | None, tenant: str | None,
                   environment: Mapping[str, str] | None = None) -> tuple[list[Tenant], list[str]]:
    """The tenants a command works for, and warnings about folders skipped. Without a tenants
    folder (none given, HEXAFLOW_TENANTS unset): the current folder as the one tenant."""
    location = tenants_location(tenants_dir)
    if location is None:
        return [Tenant(tenant_name(tenant), Path("."), None, environment)], []
    found, skipped = tenants_in(Path(location), environment)
    if tenant is not None:
        chosen = [t for t in found if t.name == tenant]
        if not chosen:
            known = ", ".join(t.name for t in found) or "none"
            raise FlowError(f"no tenant {tenant!r} in {location} (tenants: {known})")
        return chosen, skipped
    if not found:
        raise FlowError(f"{location} holds no tenant folder; add one with "
                        f"`hexaflow init --tenants {location} NAME`")
    return found, skipped


def one_tenant(tenants_dir: str | None, tenant: str | None) -> Tenant:
    """The single tenant a command that works on one needs (show, drop, replay, check)."""
    chosen, _ = select_tenants(tenants_dir, tenant)
    if len(chosen) > 1:
        raise FlowError(f"this command works on one tenant; choose one with --tenant "
                        f"({', '.join(t.name for t in chosen)})")
    return chosen[0]


def flow_of(tenant: Tenant, flow: str) -> Path:
    """A tenant's flow file ``flow`` (a path inside its folder)."""
    if not tenant.in_tenants_folder:
        from hexaflow.runner import resolve_flow_path
        return resolve_flow_path(flow)
    path = tenant.folder / flow
    if not path.is_file():
        raise TenantError(f"tenant {tenant.name}: no flow file {flow} in {tenant.folder}")
    return path
