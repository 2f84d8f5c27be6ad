"""Tenants folders (docs/tenants.md): finding tenants, building each one's configuration
without borrowing another's secrets, and the commands that work per tenant."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hexaflow.scaffold import add_tenant
from hexaflow.tenants import Tenant, TenantError, select_tenants, tenants_in

FLOW = """\
flow: orders
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
routes:
  - name: sales_order
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    fields: {memo: "<<order.memo>>"}
"""
PROCESS = {"HARAVAN_TOKEN": "the-process-token", "MISA_APP_ID": "partner-app",
           "HARAVAN_BASE_URL": "http://127.0.0.1:9"}


def tenant(base: Path, name: str, tenant_yaml: str | None = None, orders: list | None = None) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "orders.yaml").write_text(FLOW)
    (folder / "orders.jsonl").write_text("".join(json.dumps(o) + "\n" for o in orders or []))
    if tenant_yaml is not None:
        (folder / "tenant.yaml").write_text(tenant_yaml)
    return folder


def config_of(base: Path, name: str, environment: dict | None = None) -> dict[str, str]:
    found, _ = tenants_in(base, environment if environment is not None else PROCESS)
    return next(t for t in found if t.name == name).config()


def test_every_subfolder_is_a_tenant_except_hidden_ones_and_bad_names(tmp_path):
    for name in ("shop-a", "shop_b.2", ".git", "_templates", "bad name", "-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("not a tenant")
    found, skipped = tenants_in(tmp_path, {})
    assert [t.name for t in found] == ["shop-a", "shop_b.2"]
    assert len(skipped) == 2 and all("not a tenant name" in s for s in skipped)
    assert [t.name for t in select_tenants(str(tmp_path), "shop-a", {})[0]] == ["shop-a"]
    with pytest.raises(TenantError.__mro__[1], match="no tenant 'shop-z'.*shop-a, shop_b.2"):
        select_tenants(str(tmp_path), "shop-z", {})


def test_without_a_tenants_folder_the_current_folder_is_the_tenant_with_the_process_environment(
        monkeypatch):
    monkeypatch.delenv("HEXAFLOW_TENANTS", raising=False)
    (only,), skipped = select_tenants(None, "shop", PROCESS)
    assert (only.name, only.in_tenants_folder, skipped) == ("shop", False, [])
    assert only.config() == PROCESS          # secrets included: one shop, as always


def test_a_tenant_never_borrows_a_secret_from_the_process_environment(tmp_path):
    tenant(tmp_path, "shop-a")
    config = config_of(tmp_path, "shop-a")
    assert "HARAVAN_TOKEN" not in config                 # secret: not inherited
    assert config["MISA_APP_ID"] == "partner-app"         # the integrator's, shared
    assert config["HARAVAN_BASE_URL"] == "http://127.0.0.1:9"


def test_secrets_from_a_file_outside_the_folder_and_settings_from_tenant_yaml(tmp_path):
    secrets = tmp_path / "secrets" / "a.env"
    secrets.parent.mkdir()
    secrets.write_text("# shop A\nexport HARAVAN_TOKEN='tok-a'\nMISA_ACCESS_CODE = \"code a\"\n\n")
    secrets.chmod(0o600)
    tenant(tmp_path / "t", "shop-a", "environment:\n  MISA_ORG_COMPANY_CODE: '0301'\n"
           "  HARAVAN_BASE_URL: http://127.0.0.1:1\nsecrets: ../../secrets/a.env\n")
    found, _ = tenants_in(tmp_path / "t", PROCESS)
    config = found[0].config()
    assert config["HARAVAN_TOKEN"] == "tok-a" and config["MISA_ACCESS_CODE"] == "code a"
    assert config["MISA_ORG_COMPANY_CODE"] == "0301"
    assert config["HARAVAN_BASE_URL"] == "http://127.0.0.1:1"
    assert found[0].warnings == []
    secrets.chmod(0o644)
    found, _ = tenants_in(tmp_path / "t", PROCESS)
    found[0].config()
    assert any("chmod 600" in w for w in found[0].warnings)


def test_secrets_from_the_environment_with_the_tenants_prefix(tmp_path):
    tenant(tmp_path, "shop-a", "secrets: {env_prefix: SHOP_A_}\n")
    config = config_of(tmp_path, "shop-a", {**PROCESS, "SHOP_A_HARAVAN_TOKEN": "tok-a",
                                             "SHOP_B_HARAVAN_TOKEN": "tok-b"})
    assert config["HARAVAN_TOKEN"] == "tok-a"
    assert "SHOP_A_HARAVAN_TOKEN" in config and "tok-b" not in {config["HARAVAN_TOKEN"]}


@pytest.mark.parametrize("tenant_yaml, message", [
    ("environment:\n  HARAVAN_TOKEN: abc\n", r"tenant.yaml:2:3: HARAVAN_TOKEN is a secret"),
    ("environment:\n  MISA_ORG_COMPNY_CODE: x\n", r"tenant.yaml:2:3: 'MISA_ORG_COMPNY_CODE' is not a "
                                                  r"variable any connector reads; known: MISA_"),
    ("secret: a.env\n", r"tenant.yaml:1:1: unknown key 'secret'"),
    ("secrets: [a.env]\n", r"secrets must be a file path or \{env_prefix"),
    ("secrets: missing.env\n", r"its secrets file .*missing.env .*does not exist"),
    ("environment: [1\n", r"tenant.yaml:"),
    # YAML would read 0301 as 193: a code must be written as text.
    ("environment:\n  MISA_ORG_COMPANY_CODE: 0301\n", r"tenant.yaml:2:26: MISA_ORG_COMPANY_CODE must be "
                                                     r"text: write it in quotes"),
])
def test_a_broken_tenant_yaml_is_an_error_naming_the_place_and_never_a_secret(tmp_path, tenant_yaml, message):
    tenant(tmp_path, "shop-a", tenant_yaml)
    with pytest.raises(TenantError, match=message) as caught:
        config_of(tmp_path, "shop-a")
    assert "abc" not in str(caught.value)


def test_a_secrets_line_that_is_not_key_value_is_refused_without_echoing_it(tmp_path):
    (tmp_path / "a.env").write_text("HARAVAN_TOKEN=ok\nthis is sup3r-secret\n")
    tenant(tmp_path / "t", "shop-a", "secrets: ../../a.env\n")
    with pytest.raises(TenantError, match=r"a.env:2: not a KEY=VALUE line") as caught:
        config_of(tmp_path / "t", "shop-a")
    assert "sup3r" not in str(caught.value)


def test_a_secrets_file_tracked_by_git_is_refused(tmp_path):
    repo = tmp_path / "repo"
    tenant(repo, "shop-a", "secrets: shop-a.env\n")
    (repo / "shop-a" / "shop-a.env").write_text("HARAVAN_TOKEN=committed\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    with pytest.raises(TenantError, match="tracked by git"):
        config_of(repo, "shop-a")


def test_init_adds_a_tenant_with_a_tenant_yaml_and_refuses_a_bad_name(tmp_path, cli):
    result = cli("init", "--tenants", str(tmp_path / "tenants"), "shop-a")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "tenants" / "shop-a"
    assert (folder / "orders.yaml").is_file() and (folder / "tenant.yaml").is_file()
    assert "secrets: ../.secrets/shop-a.env" in (folder / "tenant.yaml").read_text()
    assert Tenant("shop-a", folder, tmp_path / "tenants", {}).settings["environment"] == {}
    bad = cli("init", "--tenants", str(tmp_path / "tenants"), "../evil")
    assert bad.exit_code == 1 and "not a tenant name" in bad.output
    with pytest.raises(Exception, match="not a tenant name"):
        add_tenant(tmp_path / "tenants", "_hidden")


def test_run_with_tenants_runs_each_tenants_own_flow_and_one_broken_tenant_holds_no_other_back(
        tmp_path, cli):
    base = tmp_path / "tenants"
    tenant(base, "shop-a", "environment: {HEXAFLOW_FILE_OUT: out-a}\n", [{"id": 1, "memo": "a"}])
    tenant(base, "shop-b", "secrets: nowhere.env\n", [{"id": 2, "memo": "b"}])
    tenant(base, "shop-c", "environment: {HEXAFLOW_FILE_OUT: out-c}\n", [{"id": 3, "memo": "c"}])
    result = cli("run", "orders.yaml", "--tenants", str(base))
    assert result.exit_code == 1, result.output       # shop-b could not run
    assert "tenant shop-b: " in result.output and "nowhere.env" in result.output
    written_a = [json.loads(line) for line in (tmp_path / "out-a" / "records.jsonl").read_text().splitlines()]
    written_c = [json.loads(line) for line in (tmp_path / "out-c" / "records.jsonl").read_text().splitlines()]
    assert [w["key"] for w in written_a] == ["DH_1"] and [w["key"] for w in written_c] == ["DH_3"]

    status = cli("status", "--tenants", str(base))
    assert status.exit_code == 0
    assert "== tenant shop-a" in status.output and "== tenant shop-c" in status.output
    only_c = cli("status", "--tenants", str(base), "--tenant", "shop-c")
    assert "shop-a" not in only_c.output and "orders: cursor" in only_c.output
    assert "DH_3" in cli("trace", "3", "--tenants", str(base), "--tenant", "shop-c").output
    assert "nothing recorded for '3'" in cli("trace", "3", "--tenants", str(base),
                                             "--tenant", "shop-a").output
    many = cli("dlq", "show", "1", "--tenants", str(base))
    assert many.exit_code == 1 and "choose one with --tenant" in many.output

    report = cli("tenants", "--tenants", str(base), "--format", "json")
    assert report.exit_code == 1
    health = {t["name"]: t for t in json.loads(report.output)["tenants"]}
    assert health["shop-a"]["health"] == "ok" and health["shop-c"]["health"] == "ok"
    assert health["shop-b"]["health"] == "invalid" and "nowhere.env" in health["shop-b"]["problems"][0]
    assert health["shop-a"]["documents"] == {"done": 1}, health["shop-a"]


def test_the_tenants_report_names_two_tenants_sharing_a_secret(tmp_path, cli):
    base = tmp_path / "tenants"
    for name in ("shop-a", "shop-b"):
        tenant(base, name, "secrets: {env_prefix: SHARED_}\n")
    result = cli("tenants", "--tenants", str(base), env={"SHARED_HARAVAN_TOKEN": "same-token-1234"})
    assert result.exit_code == 1
    assert "HARAVAN_TOKEN is the same as tenant shop-b's" in result.output
    assert "same-token-1234" not in result.output
