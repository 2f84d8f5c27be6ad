"""What the MISA company holds of the things settings name (``MisaConnector.references``, which
``hexaflow check`` asks), and the sandbox's chart of every account preset."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hexaflow.connectors.misa.demo_data import CHARTS, DEFAULT_CHART

PRESETS = yaml.safe_load((Path(__file__).parents[3] / "mappings" / "account_presets.yaml")
                         .read_text(encoding="utf-8"))


def test_the_sandbox_has_a_chart_for_every_account_preset_and_the_default_is_settings_default():
    assert sorted(CHARTS) == sorted(PRESETS)
    settings = yaml.safe_load((Path(__file__).parents[3] / "mappings" / "settings.yaml")
                              .read_text(encoding="utf-8"))
    assert DEFAULT_CHART == settings["account_preset"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_account_of_a_preset_can_take_postings_in_the_sandbox_chart_of_that_preset(
        preset, admin, connector):
    assert admin.post("reset", {"data": "empty", "chart": preset}) == {"reset": "empty",
                                                                       "chart": preset}
    accounts = sorted(set(PRESETS[preset]["accounts"].values()))
    assert connector.references("account", accounts) == {a: None for a in accounts}
    # 131 stays without sub-accounts in every sandbox chart, as in MISA's default chart.
    assert not [n for n, _ in CHARTS[preset] if n != "131" and n.startswith("131")]


def test_circular_133_has_156_without_sub_accounts_and_no_521(admin, connector):
    admin.post("reset", {"data": "empty", "chart": "circular_133_2016"})
    found = connector.references("account", ["156", "1561", "5211"])
    assert found == {"156": None, "1561": "is not in the chart of accounts",
                     "5211": "is not in the chart of accounts"}


def test_an_unknown_chart_is_refused_by_reset(admin):
    answer = admin.post("reset", {"data": "empty", "chart": "circular_48_2006"})
    assert "chart must be one of" in answer["error"]


def test_a_parent_account_and_an_inactive_account_cannot_take_postings(admin, connector):
    chart = admin.get("dictionary")["accounts"]
    chart = [dict(a, inactive=True) if a["account_number"] == "711" else a for a in chart]
    admin.post("chart", {"accounts": chart + [{"account_number": "1311",
                                               "account_name": "Phải thu khách lẻ"}]})
    found = connector.references("account", ["131", "1311", "711", "511", "5111", "9999"])
    assert found == {"131": "has sub-accounts (1311) and takes no postings", "1311": None,
                     "711": "is inactive (ngừng theo dõi) in MISA",
                     "511": "has sub-accounts (5111, 5112, 5113) and takes no postings",
                     "5111": None, "9999": "is not in the chart of accounts"}


def test_items_stocks_and_bank_accounts_are_found_by_their_codes(connector):
    assert connector.references("item", ["DV_VANCHUYEN", " DV_GIAMGIA ", "DV_NONE"]) == {
        "DV_VANCHUYEN": None, " DV_GIAMGIA ": None, "DV_NONE": "is not in the inventory items"}
    assert connector.references("stock", ["KHO_HCM", "KHO_HP"]) == {
        "KHO_HCM": None, "KHO_HP": "is not in the warehouses"}
    assert connector.references("bank_account", ["0071000123456", "0071000999999"]) == {
        "0071000123456": None, "0071000999999": "is not in the company's bank accounts"}
    assert connector.references("unit", ["Cái"]) is None      # a kind MISA's check has not


def test_the_chart_and_bank_accounts_read_as_resources(connector):
    accounts = {r["account_number"]: r for p in connector.read("accounts", {}) for r in p.records}
    assert accounts["511"]["is_parent"] is True and accounts["5111"]["is_parent"] is False
    banks = [r["bank_account_number"] for p in connector.read("bank_accounts", {}) for r in p.records]
    assert banks == ["0071000123456"]
