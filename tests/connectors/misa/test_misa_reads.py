"""Dictionary paging and incremental reads, deletions, inventory balances."""
from __future__ import annotations

from decimal import Decimal

from hexaflow.connector import WriteItem
from hexaflow.connectors.sandbox_world import CATALOGUE, WAREHOUSES


def _item(code: str, name: str, price: int = 100000) -> WriteItem:
    return WriteItem(code, "dictionary", "upsert", code,
                     {"dictionary_type": 3, "inventory_item_code": code,
                      "inventory_item_name": name, "unit_name": "Cái", "sale_price1": price})


def test_dictionary_pages_hold_at_most_100_and_stop_on_a_short_page(connector, admin):
    connector.write([_item(f"SP{n:04d}", f"Sản phẩm {n}") for n in range(190)])
    admin.drain()
    pages = list(connector.read("items", {}))
    assert [len(p.records) for p in pages] == [100, 100, 7]   # 17 demo + 190 new
    pages_take = [c for c in admin.get("calls")["calls"] if c["function"] == "get_dictionary"]
    assert [c.get("take", 100) for c in pages_take] and len(pages_take) == 3
    codes = [r["inventory_item_code"] for p in pages for r in p.records]
    assert len(codes) == len(set(codes)) == 207
    assert pages[0].cursor is None and pages[-1].cursor      # only the last page moves the cursor


def test_incremental_reads_return_only_what_changed(connector, admin):
    first = list(connector.read("items", {}))
    cursor = first[-1].cursor
    assert list(connector.read("items", {}, since=cursor))[0].records == []

    connector.write([_item("NEW-1", "Hàng mới"), _item("AO-THUN-S", "Áo thun cotton S (mới)")])
    admin.drain()
    changed = list(connector.read("items", {}, since=cursor))
    records = {r["inventory_item_code"]: r for p in changed for r in p.records}
    assert set(records) == {"NEW-1", "AO-THUN-S"}
    assert records["AO-THUN-S"]["inventory_item_name"] == "Áo thun cotton S (mới)"
    assert records["NEW-1"]["sale_price1"] == Decimal(100000)
    assert changed[-1].cursor > cursor


def test_deleted_items_are_read_with_their_own_watermark(connector, admin):
    start = list(connector.read("deleted_items", {}))
    assert start[-1].records == []
    admin.post("dictionary", {"delete": [{"dictionary_type": 3, "code": "HOP-QUA"}]})
    deleted = [r for p in connector.read("deleted_items", {}, since=start[-1].cursor)
               for r in p.records]
    assert [r["inventory_item_code"] for r in deleted] == ["HOP-QUA"]
    assert "HOP-QUA" not in {r["inventory_item_code"] for p in connector.read("items", {})
                             for r in p.records}


def test_customers_stocks_and_units_use_misa_field_names(connector):
    customers = [r for p in connector.read("customers", {}) for r in p.records]
    assert {"account_object_code", "account_object_name", "is_customer"} <= set(customers[0])
    stocks = {r["stock_code"] for p in connector.read("stocks", {}) for r in p.records}
    assert stocks == {w.stock_code for w in WAREHOUSES}


def test_inventory_balance_has_a_row_per_item_and_warehouse(connector, admin):
    admin.post("stock", {"inventory_item_code": "TUI-XACH", "stock_code": "KHO_DN",
                         "quantity": 17})
    pages = list(connector.read("inventory_balance", {}))
    assert all(len(p.records) <= 100 for p in pages)
    rows = [r for p in pages for r in p.records]
    keys = {(r["inventory_item_code"], r["stock_code"]) for r in rows}
    assert keys == {(p.sku, w.stock_code) for p in CATALOGUE for w in WAREHOUSES}
    assert len(rows) == len(keys)
    row = next(r for r in rows if (r["inventory_item_code"], r["stock_code"])
               == ("TUI-XACH", "KHO_DN"))
    assert row["quantity_balance"] == Decimal(17)
    assert isinstance(row["amount_balance"], Decimal)
    assert row["amount_balance"] == Decimal(17) * Decimal(700000)


def test_exists_looks_up_dictionary_codes_but_not_vouchers(connector):
    assert connector.exists("dictionary", "dictionary:3:HOP-QUA") is True
    assert connector.exists("dictionary", "5:KHO_HN") is True
    assert connector.exists("dictionary", "dictionary:1:NOBODY") is False
    assert connector.exists("voucher", "BH_1") is None
