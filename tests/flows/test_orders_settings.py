"""Settings of the orders flow that change the books: the VAT rate of each item, the accounts of
the regime's preset and the company's own, and the discount mode the preset implies."""
from __future__ import annotations

from decimal import Decimal

from books import Books, orders_plan


def sold(b: Books, sku: str = "AO-THUN-M", *, books_check: bool = True) -> dict:
    """The sales voucher of a shipped order of two units of ``sku`` (the books checked, unless
    the VAT rate is not the settings' one, which the check assumes)."""
    oid = b.create([(sku, 2, 0)], shipping=0)
    b.shop.create_fulfillment(oid, {})
    b.sync(oid)
    assert b.problems == []
    assert not books_check or b.check(oid) == []
    return b.written[f"BH_{oid}"]


def test_an_item_takes_the_vat_rate_of_its_misa_item_when_asked():
    plan = orders_plan(settings={"orders.vat.use_item_rate": True})
    plan.tables["items"] = {**plan.tables["items"], "AO-THUN-M": {
        **plan.tables["items"]["AO-THUN-M"], "tax_rate": 10}}
    voucher = sold(Books(plan), books_check=False)
    assert [line["vat_rate"] for line in voucher["detail"]] == [10]
    net, vat = Decimal(str(voucher["total_sale_amount"])), Decimal(str(voucher["total_vat_amount"]))
    assert (net + vat, vat) == (Decimal(500000), Decimal(45455))      # 10/110 of the price paid


def test_without_it_the_default_rate_stands_whatever_misa_says():
    plan = orders_plan()
    plan.tables["items"] = {**plan.tables["items"], "AO-THUN-M": {
        **plan.tables["items"]["AO-THUN-M"], "tax_rate": 10}}
    assert [line["vat_rate"] for line in sold(Books(plan))["detail"]] == [8]


def test_lines_carry_the_unit_of_the_misa_item():
    line = sold(Books(orders_plan()), "GIAY-THE-THAO-42")["detail"][0]
    assert (line["unit_name"], line["main_unit_name"], line["main_convert_rate"]) == ("Đôi", "Đôi", 1)
    assert (line["main_quantity"], line["main_unit_price"]) == (line["quantity"], line["unit_price"])
