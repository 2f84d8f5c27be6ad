"""End to end: MISA AMIS items and stock → Haravan products and stock (R-PRD-1..3, R-INV-1..2).

Both sandboxes run in-process on loopback HTTP. The tests act as the accountant does in AMIS
(create and change items through ``save_dictionary`` or the sandbox's admin routes, set stock),
run the packaged flows ``mappings/products.yaml`` and ``mappings/inventory.yaml`` through the
CLI, and check Haravan through its API and ``/_sandbox/`` admin routes, including reruns that
must change nothing.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from hexaflow.cli import main
from hexaflow.connector import ConnectorContext, WriteItem
from hexaflow.connectors.commands import start_sandboxes
from hexaflow.connectors.misa import MisaConnector
from hexaflow.connectors.sandbox_world import WAREHOUSES

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
CREDENTIALS = {"HARAVAN_TOKEN": "test-token", "HARAVAN_WEBHOOK_SECRET": "test-webhook-secret",
               "MISA_APP_ID": "test-app", "MISA_ACCESS_CODE": "test-access-code",
               "MISA_ORG_COMPANY_CODE": "0312345678"}
HCM, HN, DN = (w.location_id for w in WAREHOUSES)
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def sandboxes():
    haravan, misa, creds = start_sandboxes(data="empty", orders=0, rate_limit=False,
                                           credentials=dict(CREDENTIALS))
    try:
        yield haravan, misa, {**creds, "HARAVAN_BASE_URL": haravan.url, "MISA_BASE_URL": misa.url}
    finally:
        haravan.stop()
        misa.stop()


class World:
    """A fresh shop and company (the sandboxes reset to their setup), a fresh state store."""

    def __init__(self, haravan_url: str, misa_url: str, config: dict[str, str], state: Path):
        self.haravan_url, self.misa_url, self.config, self.state = haravan_url, misa_url, config, state
        self.http = httpx.Client(timeout=TIMEOUT)

    # -- the accountant in AMIS ----------------------------------------------------------
    def save_item_through_api(self, **entry) -> None:
        """Create or change an item through MISA's real save_dictionary (the MISA connector)."""
        connector = MisaConnector(ConnectorContext(config=self.config))
        try:
            results = connector.write([WriteItem(ref="1", document="dictionary", action="upsert",
                                                 key=entry["inventory_item_code"],
                                                 payload={"dictionary_type": 3, **entry})])
        finally:
            connector.close()
        assert [r.status for r in results] == ["queued"], results
        self.drain()

    def save_in_amis(self, *entries) -> None:
        """What someone does in AMIS's screens (the sandbox's admin route)."""
        answer = self.http.post(f"{self.misa_url}/_sandbox/dictionary", json={"dictionary": list(entries)})
        assert answer.status_code == 200, answer.text

    def set_stock(self, item: str, stock: str, quantity: int) -> None:
        answer = self.http.post(f"{self.misa_url}/_sandbox/stock", json={
            "inventory_item_code": item, "stock_code": stock, "quantity": quantity})
        assert answer.status_code == 200, answer.text

    def drain(self) -> None:
        answer = self.http.post(f"{self.misa_url}/_sandbox/drain", json={"timeout_s": 5})
        assert answer.status_code == 200, answer.text

    # -- hexaflow ------------------------------------------------------------------------
    def run(self, flow: str, expect_exit: int = 0) -> str:
        result = CliRunner().invoke(main, ["run", str(MAPPINGS / f"{flow}.yaml")],
                                    env={**self.config, "HEXAFLOW_STATE": str(self.state)},
                                    catch_exceptions=False)
        assert result.exit_code == expect_exit, result.output
        assert CREDENTIALS["MISA_ACCESS_CODE"] not in result.output
        assert CREDENTIALS["HARAVAN_TOKEN"] not in result.output
        return result.output

    # -- the shop in Haravan -------------------------------------------------------------
    def products_with_sku(self, sku: str) -> list[dict]:
        answer = self.http.get(f"{self.haravan_url}/com/products.json", params={"sku": sku},
                               headers={"Authorization": f"Bearer {self.config['HARAVAN_TOKEN']}"})
        assert answer.status_code == 200, answer.text
        return answer.json()["products"]

    def on_hand(self) -> dict[tuple[int, str], int]:
        """(location id, SKU) → qty_onhand, through GET /com/inventory_locations.json."""
        state = self.shop()
        sku_of = {v["id"]: v["sku"] for p in state["products"] for v in p["variants"]}
        answer = self.http.get(f"{self.haravan_url}/com/inventory_locations.json",
                               params={"variant_ids": ",".join(map(str, sku_of))},
                               headers={"Authorization": f"Bearer {self.config['HARAVAN_TOKEN']}"})
        assert answer.status_code == 200, answer.text
        return {(row["loc_id"], sku_of[row["variant_id"]]): row["qty_onhand"]
                for row in answer.json()["inventory_locations"]}

    def shop(self) -> dict:
        return self.http.get(f"{self.haravan_url}/_sandbox/state").json()


@pytest.fixture
def world(sandboxes, tmp_path):
    haravan, misa, config = sandboxes
    with httpx.Client(timeout=TIMEOUT) as http:
        assert http.post(f"{haravan.url}/_sandbox/reset", json={}).status_code == 200
        assert http.post(f"{misa.url}/_sandbox/reset", json={"data": "empty"}).status_code == 200
    w = World(haravan.url, misa.url, config, tmp_path / "state.db")
    yield w
    w.http.close()


def item(code: str, name: str, unit: str, price: int, **more) -> dict:
    """An inventory item as pushed to MISA (dictionary_type 3)."""
    return {"dictionary_type": 3, "inventory_item_code": code, "inventory_item_name": name,
            "inventory_item_type": 0, "unit_name": unit, "unit_price": price // 2,
            "sale_price1": price, "fixed_sale_price": price, "tax_rate": 8, "inactive": False,
            **more}


def route_line(output: str, route: str) -> str:
    match = re.search(rf"^\s+{route}\s+(.*)$", output, re.M)
    assert match, output
    return match.group(1)


def test_R_PRD_1_new_misa_item_becomes_a_haravan_product(world):
    world.save_item_through_api(**item("AO-POLO-M", "Áo polo nam - M", "Cái", 299000,
                                       description="Áo polo cotton, cổ bẻ"))
    output = world.run("products")
    assert "0 failed" in output
    assert route_line(output, "product").startswith("written 1")
    assert route_line(output, "service_item").startswith("matched 3")     # the service items

    [product] = world.products_with_sku("AO-POLO-M")
    assert product["title"] == "Áo polo nam - M"
    assert [v["sku"] for v in product["variants"]] == ["AO-POLO-M"]
    # The shipping service item of the company setup is not a product.
    assert world.products_with_sku("DV_VANCHUYEN") == []
    assert len(world.shop()["products"]) == 1

    # Rerun: nothing new in MISA, nothing written, Haravan unchanged.
    before = world.shop()["products"]
    again = world.run("products")
    assert "read 0 records, 0 failed" in again
    assert world.shop()["products"] == before


def test_R_PRD_2_name_sku_description_unit_and_selling_price_are_mapped(world):
    world.save_item_through_api(**item("GIAY-CHAY-41", "Giày chạy bộ - 41", "Đôi", 1090000,
                                       description="Đế cao su, size 41", unit_price=600000,
                                       sale_price1=1200000, fixed_sale_price=1090000))
    world.save_in_amis(item("VO-NGAN", "Vớ ngắn", "Đôi", 0, sale_price1=25000, fixed_sale_price=0),
                       item("MU-CU", "Mũ cũ (ngừng bán)", "Chiếc", 90000, inactive=True))
    output = world.run("products")
    assert route_line(output, "product").startswith("written 2")
    assert route_line(output, "inactive_item").startswith("matched 1")

    [shoes] = world.products_with_sku("GIAY-CHAY-41")
    assert shoes["title"] == "Giày chạy bộ - 41"
    assert shoes["body_html"] == "Đế cao su, size 41"
    assert [o["name"] for o in shoes["options"]] == ["Đơn vị tính"]
    [variant] = shoes["variants"]
    assert variant["sku"] == "GIAY-CHAY-41"
    assert variant["option1"] == "Đôi"                          # the MISA unit
    assert Decimal(str(variant["price"])) == Decimal(1090000)   # fixed_sale_price, not unit_price
    assert variant["inventory_management"] == "haravan"         # stock is tracked

    [socks] = world.products_with_sku("VO-NGAN")
    assert Decimal(str(socks["variants"][0]["price"])) == Decimal(25000)   # sale_price1 fallback
    assert socks["body_html"] == ""
    # An inactive item is not put on Haravan.
    assert world.products_with_sku("MU-CU") == []


def test_R_PRD_3_a_change_in_misa_updates_the_same_haravan_product(world):
    world.save_in_amis(item("HOP-QUA", "Hộp quà tặng", "Hộp", 45000))
    world.run("products")
    [before] = world.products_with_sku("HOP-QUA")

    # The accountant renames the item and raises its price in AMIS (through save_dictionary).
    world.save_item_through_api(**item("HOP-QUA", "Hộp quà Tết", "Hộp", 55000))
    output = world.run("products")
    assert route_line(output, "product").startswith("written 1")

    [after] = world.products_with_sku("HOP-QUA")
    assert after["id"] == before["id"]                                  # updated, not a twin
    assert after["variants"][0]["id"] == before["variants"][0]["id"]
    assert after["title"] == "Hộp quà Tết"
    assert Decimal(str(after["variants"][0]["price"])) == Decimal(55000)
    assert len(world.shop()["products"]) == 1

    # A change in MISA that touches no mapped field (the cost) is read again and skipped.
    world.save_in_amis(item("HOP-QUA", "Hộp quà Tết", "Hộp", 55000, unit_price=21000))
    output = world.run("products")
    assert route_line(output, "product").startswith("skipped 1")
    assert world.shop()["products"][0]["updated_at"] == after["updated_at"]

    # Rerun with nothing new: nothing read, nothing written.
    before_rerun = world.shop()["products"]
    assert "read 0 records, 0 failed" in world.run("products")
    assert world.shop()["products"] == before_rerun


def test_R_INV_1_misa_stock_per_warehouse_becomes_on_hand_at_the_mapped_location(world):
    world.save_in_amis(item("AO-THUN-S", "Áo thun cotton - S", "Cái", 250000),
                       item("QUAN-JEAN-30", "Quần jean slim - 30", "Cái", 450000))
    world.set_stock("AO-THUN-S", "KHO_HCM", 12)
    world.set_stock("AO-THUN-S", "KHO_HN", 7)
    world.set_stock("QUAN-JEAN-30", "KHO_DN", 30)
    world.set_stock("DV_VANCHUYEN", "KHO_HCM", 0)     # a service item: no stock on Haravan
    world.run("products")

    output = world.run("inventory")
    assert "inventory: read 4 records, 0 failed" in output
    assert route_line(output, "stock").startswith("written 3")
    assert route_line(output, "service_item").startswith("matched 1")
    assert world.on_hand() == {(HCM, "AO-THUN-S"): 12, (HN, "AO-THUN-S"): 7,
                               (DN, "QUAN-JEAN-30"): 30}
    # Written as a set (never an adjustment) at each location.
    adjustments = world.shop()["adjustments"]
    assert adjustments and all(a.get("type") == "set" for a in adjustments), adjustments

    # Stock changes in MISA (a sale posted, a count): only the changed figures are sent again,
    # and Haravan's figure becomes MISA's, whatever it was.
    world.set_stock("AO-THUN-S", "KHO_HCM", 9)
    world.set_stock("QUAN-JEAN-30", "KHO_DN", 0)
    output = world.run("inventory")
    assert route_line(output, "stock").startswith("written 2, skipped 1")
    assert world.on_hand() == {(HCM, "AO-THUN-S"): 9, (HN, "AO-THUN-S"): 7,
                               (DN, "QUAN-JEAN-30"): 0}

    # Rerun: the full snapshot is read again, every line is skipped, Haravan is unchanged.
    before = world.shop()
    output = world.run("inventory")
    assert "inventory: read 4 records, 0 failed" in output
    assert route_line(output, "stock").startswith("skipped 3")
    after = world.shop()
    assert after["inventory"] == before["inventory"]
    assert after["adjustments"] == before["adjustments"]


def test_R_INV_2_an_unmapped_warehouse_is_reported_not_guessed(world):
    # A warehouse opened in AMIS that nobody added to mappings/warehouses.yaml.
    world.save_in_amis({"dictionary_type": 5, "stock_code": "KHO_CT", "stock_name": "Kho Cần Thơ",
                        "inventory_account": "1561"},
                       item("TUI-XACH", "Túi xách da", "Chiếc", 1250000))
    world.set_stock("TUI-XACH", "KHO_CT", 40)
    world.set_stock("TUI-XACH", "KHO_HCM", 5)
    world.run("products")

    output = world.run("inventory", expect_exit=2)
    assert "'KHO_CT' is not in table 'warehouses'" in output
    assert "warehouses.yaml" in output
    assert route_line(output, "stock").startswith("written 1")
    # The mapped warehouse is written; the unmapped one went nowhere (no location got 40).
    assert world.on_hand() == {(HCM, "TUI-XACH"): 5}

    # It stays reported on every run until the table has a row for it; nothing else changes.
    before = world.shop()
    output = world.run("inventory", expect_exit=2)
    assert "'KHO_CT' is not in table 'warehouses'" in output
    assert route_line(output, "stock").startswith("skipped 1")
    assert world.shop()["inventory"] == before["inventory"]


def test_R_INV_2_the_warehouse_table_maps_every_warehouse_of_the_shop_and_company():
    rows = yaml.safe_load((MAPPINGS / "warehouses.yaml").read_text(encoding="utf-8"))
    assert {r["stock_code"]: r["location_id"] for r in rows} == \
        {w.stock_code: w.location_id for w in WAREHOUSES}
    assert len({r["location_id"] for r in rows}) == len(rows)     # readable both ways



def test_R_INV_1_stock_of_an_item_not_on_haravan_is_reported_not_dropped(world):
    # An item kept inactive in MISA is not put on Haravan, so its stock has nowhere to go:
    # the line is refused and reported (dead letter, exit 2), never dropped silently.
    world.save_in_amis(item("BO-DO-NGU-M", "Bộ đồ ngủ lụa - M", "Bộ", 680000, inactive=True))
    world.set_stock("BO-DO-NGU-M", "KHO_HN", 6)
    world.set_stock("BO-DO-NGU-M", "KHO_HCM", 2)
    world.run("products")
    output = world.run("inventory", expect_exit=2)
    assert "SKU BO-DO-NGU-M is not in Haravan; push the product first" in output
    assert route_line(output, "stock").startswith("rejected 2")
    assert world.on_hand() == {}

    # Once the item is on Haravan, a changed quantity is sent.
    world.save_in_amis(item("BO-DO-NGU-M", "Bộ đồ ngủ lụa - M", "Bộ", 680000))
    assert route_line(world.run("products"), "product").startswith("written 1")
    world.set_stock("BO-DO-NGU-M", "KHO_HN", 5)
    world.run("inventory")
    assert world.on_hand()[(HN, "BO-DO-NGU-M")] == 5


def test_R_INV_1_stock_refused_before_its_product_existed_is_sent_once_it_exists(world):
    world.save_in_amis(item("BO-DO-NGU-L", "Bộ đồ ngủ lụa - L", "Bộ", 680000, inactive=True))
    world.set_stock("BO-DO-NGU-L", "KHO_HN", 6)
    world.run("products")
    world.run("inventory", expect_exit=2)

    world.save_in_amis(item("BO-DO-NGU-L", "Bộ đồ ngủ lụa - L", "Bộ", 680000))
    world.run("products")
    output = world.run("inventory")
    assert route_line(output, "stock").startswith("written 1")
    assert world.on_hand() == {(HN, "BO-DO-NGU-L"): 6}


def test_an_item_code_with_stray_spaces_updates_the_same_product_on_every_run(world):
    # Codes are read trimmed and in NFC (docs/codes-and-names.md): " PAD-1 " typed in AMIS is
    # the SKU PAD-1 on Haravan, so the next change finds that product instead of making a twin.
    world.save_in_amis(item(" PAD-1 ", "Miếng  lót   giày ", "Đôi", 20000))
    assert route_line(world.run("products"), "product").startswith("written 1")
    [before] = world.products_with_sku("PAD-1")
    assert [v["sku"] for v in before["variants"]] == ["PAD-1"]
    assert before["title"] == "Miếng lót giày"                   # a name: spaces collapsed

    world.save_in_amis(item(" PAD-1 ", "Miếng lót giày êm", "Đôi", 25000))
    assert route_line(world.run("products"), "product").startswith("written 1")
    [after] = world.products_with_sku("PAD-1")
    assert after["id"] == before["id"] and after["title"] == "Miếng lót giày êm"
    assert Decimal(str(after["variants"][0]["price"])) == Decimal(25000)
    assert len(world.shop()["products"]) == 1

    # Stock for the item (its code spelled as in AMIS) reaches that product's variant.
    world.set_stock(" PAD-1 ", "KHO_HCM", 8)
    assert route_line(world.run("inventory"), "stock").startswith("written 1")
    assert world.on_hand() == {(HCM, "PAD-1"): 8}


def test_an_item_code_in_another_unicode_form_updates_the_product_made_by_hand(world):
    # The shop made the product in Haravan with the composed SKU (NFC); AMIS holds the item
    # code decomposed (NFD), as a Mac keyboard types it. Both are one code.
    composed = "ÁO-DÀI-LỤA"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    made = world.http.post(f"{world.haravan_url}/com/products.json",
                           headers={"Authorization": f"Bearer {world.config['HARAVAN_TOKEN']}"},
                           json={"product": {"title": "Áo dài lụa", "variants": [
                               {"sku": composed, "price": 900000}]}})
    assert made.status_code == 201, made.text
    world.save_in_amis(item(decomposed, unicodedata.normalize("NFD", "Áo dài lụa tơ tằm"),
                            "Chiếc", 1200000))
    assert route_line(world.run("products"), "product").startswith("written 1")
    [product] = world.products_with_sku(composed)
    assert product["id"] == made.json()["product"]["id"]
    assert product["title"] == "Áo dài lụa tơ tằm"              # NFC
    assert len(world.shop()["products"]) == 1
