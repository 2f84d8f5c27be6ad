"""``hexaflow check`` against the MISA sandbox over loopback: a copy of mappings/ per test, its
settings changed as a company would, the command run as a person runs it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from hexaflow.cli import main
from hexaflow.connectors.misa.sandbox import MisaSandbox
from hexaflow.connectors.sandbox_server import SandboxServer

MAPPINGS = Path(__file__).parents[2] / "mappings"
CREDENTIALS = {"MISA_APP_ID": "check-app", "MISA_ACCESS_CODE": "check-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}


@pytest.fixture(scope="module")
def misa():
    app = MisaSandbox(app_id=CREDENTIALS["MISA_APP_ID"],
                      access_code=CREDENTIALS["MISA_ACCESS_CODE"],
                      org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"], data="empty")
    server = SandboxServer(app).start()
    yield server.url
    server.stop()
    app.close()


@pytest.fixture
def project(tmp_path, misa):
    httpx.post(misa + "/_sandbox/reset", json={"data": "empty"}, timeout=10).raise_for_status()
    folder = tmp_path / "shop"
    shutil.copytree(MAPPINGS, folder, ignore=shutil.ignore_patterns("__pycache__", "expected"))
    return folder


def check(folder: Path, misa_url: str, *args: str, env: dict[str, str] | None = None):
    environment = {"MISA_BASE_URL": misa_url, **CREDENTIALS} if env is None else env
    result = CliRunner().invoke(main, ["check", str(folder), *args], env=environment)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (once) in the file."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def line_of(path: Path, text: str, after: str = "") -> int:
    """The line of the first ``text`` after ``after`` in the file."""
    content = path.read_text(encoding="utf-8")
    start = content.index(after) if after else 0
    return content[:content.index(text, start)].count("\n") + 1


def test_a_clean_tenant_passes(project, misa):
    code, out = check(project, misa)
    assert code == 0, out
    assert out == "20 setting(s) checked: 0 problem(s)\n"


def test_each_wrong_setting_is_reported_once_with_its_place_and_a_fix(project, misa):
    settings = project / "settings.yaml"
    # A missing account (the company's override), a missing item, a wrong bank account.
    edit(settings, "accounts: {}", "accounts:\n  other_income: \"7119\"")
    edit(settings, 'fee_item: {code: "DV_PHIGIULAI"', 'fee_item: {code: "DV_KHONGCO"')
    edit(settings, 'number: "0071000123456"', 'number: "0071000999999"')
    # A missing warehouse.
    with (project / "warehouses.yaml").open("a", encoding="utf-8") as handle:
        handle.write('- {stock_code: KHO_HP, location_id: 963417, name: "Kho Hải Phòng"}\n')
    # A parent account: the company's chart splits 131 into customer groups.
    chart = httpx.get(misa + "/_sandbox/dictionary", timeout=10).json()["accounts"]
    httpx.post(misa + "/_sandbox/chart", json={"accounts": chart + [
        {"account_number": "1311", "account_name": "Phải thu khách lẻ"}]}, timeout=10)

    code, out = check(project, misa, "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["checked"] == 21     # 13 accounts, 3 items, 4 stocks, 1 bank
    found = {(p["setting"], p["code"]): p for p in report["problems"]}
    presets = project / "account_presets.yaml"
    expected = {
        ("accounts.receivable (preset circular_99_2025)", "131"):
            (presets, line_of(presets, 'receivable: "131"', after="circular_99_2025:"),
             "account 131 has sub-accounts (1311) and takes no postings"),
        ("accounts.other_income", "7119"):
            (settings, line_of(settings, 'other_income: "7119"'),
             "account 7119 is not in the chart of accounts"),
        ("orders.fee_item.code", "DV_KHONGCO"):
            (settings, line_of(settings, "DV_KHONGCO"), "item DV_KHONGCO is not in the inventory items"),
        ("warehouses.yaml row 4", "KHO_HP"):
            (project / "warehouses.yaml", line_of(project / "warehouses.yaml", "KHO_HP"),
             "stock KHO_HP is not in the warehouses"),
        ("bank_account.number", "0071000999999"):
            (settings, line_of(settings, "0071000999999"),
             "bank account 0071000999999 is not in the company's bank accounts"),
    }
    assert len(report["problems"]) == len(found) == len(expected)
    for key, (file, line, problem) in expected.items():
        assert found[key]["problem"] == problem
        assert Path(found[key]["file"]).resolve() == file.resolve()
        assert found[key]["line"] == line, key
        assert found[key]["fix"]
    assert "sub-account" in found[("accounts.receivable (preset circular_99_2025)", "131")]["fix"]

    code, text = check(project, misa)
    assert code == 1
    lines = text.splitlines()
    assert lines[-1] == "21 setting(s) checked: 5 problem(s)"
    assert any(line.endswith(")") and "settings.yaml:" in line and "accounts.other_income: "
               "account 7119 is not in the chart of accounts (fix: add it to the chart in AMIS"
               in line for line in lines)


def test_the_check_reads_the_accounts_the_flow_posts_to(project, misa):
    """The effective accounts are the flow's own lets: a Circular 133 company on its own chart
    passes, and the Circular 99 preset on that chart is told what is missing."""
    httpx.post(misa + "/_sandbox/reset", json={"data": "empty", "chart": "circular_133_2016"},
               timeout=10).raise_for_status()
    code, out = check(project, misa)
    assert code == 1
    assert sorted(line.split(": ")[1] for line in out.splitlines()[:-1]) == [
        "accounts.inventory (preset circular_99_2025)", "accounts.sales_allowance (preset circular_99_2025)",
        "accounts.sales_discount (preset circular_99_2025)", "accounts.sales_return (preset circular_99_2025)"]
    edit(project / "settings.yaml", "account_preset: circular_99_2025",
         "account_preset: circular_133_2016")
    assert check(project, misa) == (0, "20 setting(s) checked: 0 problem(s)\n")


def test_an_unknown_preset_is_reported_with_the_presets_there_are(project, misa):
    edit(project / "settings.yaml", "account_preset: circular_99_2025",
         "account_preset: circular_48_2006")
    line = line_of(project / "settings.yaml", "account_preset: circular_48_2006")
    code, out = check(project, misa, "--format", "json")
    assert code == 1
    (problem,) = json.loads(out)["problems"]
    assert problem["setting"] == "account_preset" and problem["line"] == line
    assert problem["problem"] == ("settings.yaml: account_preset circular_48_2006 is not in "
                                  "account_presets.yaml")
    assert problem["fix"] == ("set account_preset to one of circular_133_2016, circular_200_2014, "
                              "circular_99_2025")


def test_a_fallback_item_is_checked_when_set(project, misa):
    edit(project / "settings.yaml", "fallback_item: null", "fallback_item: KHONG-SKU")
    code, out = check(project, misa)
    assert code == 1
    assert "orders.fallback_item: item KHONG-SKU is not in the inventory items" in out
    assert out.splitlines()[-1] == "21 setting(s) checked: 1 problem(s)"


def test_without_misa_credentials_it_says_what_to_set(project, misa):
    code, out = check(project, misa, env={"MISA_BASE_URL": misa})
    assert code == 1
    assert "MISA AMIS is not configured: set MISA_ACCESS_CODE" in out


def test_a_folder_without_the_orders_flow_is_an_error(tmp_path, misa):
    code, out = check(tmp_path, misa)
    assert code == 1
    assert "no orders.yaml in" in out
