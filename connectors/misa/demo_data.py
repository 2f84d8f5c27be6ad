"""The MISA company the sandbox starts with.

``empty``: what a fresh company holds before any sync (stocks, units and the shipping service
item from ``sandbox_world``, the chart of accounts of one account preset, Circular 99 unless
another is named, and one bank account). ``demo`` adds one inventory item per catalogue SKU, a few customers
and a stock balance per item × stock. Ids are uuid5 of the code so that a reset gives the same
ids every time.
"""
from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Any

from hexaflow.connectors.sandbox_world import CATALOGUE, SERVICE_ITEMS, SHIPPING_ITEM_UNIT, UNITS, WAREHOUSES

_NS = uuid.UUID("1b6f0a52-7e0c-5c5e-8f43-6d6973616462")
BRANCH_ID = str(uuid.uuid5(_NS, "branch"))

DEMO_CUSTOMERS = (
    ("KHACHLE", "Khách lẻ", "", "", ""),
    ("KH00001", "Nguyễn Văn An", "12 Lê Lợi, Quận 1, TP Hồ Chí Minh", "0901234567", "an@example.com"),
    ("KH00002", "Trần Thị Bình", "45 Hàng Bài, Hoàn Kiếm, Hà Nội", "0912345678", "binh@example.com"),
    ("KH00003", "Lê Minh Châu", "8 Bạch Đằng, Hải Châu, Đà Nẵng", "0935123456", "chau@example.com"),
)


# The charts of accounts, one per account preset (mappings/account_presets.yaml): the level-1/2/3
# accounts the flows and tests post to. A sub-account's number extends its parent's (111 → 1111),
# which is how the sandbox finds parents. 131 has no sub-account, as in MISA's default chart.
# Circular 99/2025 keeps Circular 200's numbers for these accounts (112 is renamed); Circular
# 133/2016 has 156 without sub-accounts and no 521 (deductions are debited to 511).
_CHART_COMMON = (
    ("111", "Tiền mặt"), ("1111", "Tiền Việt Nam"),
    ("131", "Phải thu của khách hàng"),
    ("133", "Thuế GTGT được khấu trừ"), ("1331", "Thuế GTGT được khấu trừ của hàng hóa, dịch vụ"),
    ("138", "Phải thu khác"), ("1388", "Phải thu khác"),
    ("331", "Phải trả cho người bán"),
    ("333", "Thuế và các khoản phải nộp Nhà nước"), ("3331", "Thuế giá trị gia tăng phải nộp"),
    ("33311", "Thuế GTGT đầu ra"),
    ("511", "Doanh thu bán hàng và cung cấp dịch vụ"), ("5111", "Doanh thu bán hàng hóa"),
    ("5112", "Doanh thu bán các thành phẩm"), ("5113", "Doanh thu cung cấp dịch vụ"),
    ("632", "Giá vốn hàng bán"),
    ("711", "Thu nhập khác"),
)
_DEDUCTIONS = (("521", "Các khoản giảm trừ doanh thu"), ("5211", "Chiết khấu thương mại"),
               ("5212", "Hàng bán bị trả lại"), ("5213", "Giảm giá hàng bán"))
_GOODS_200 = (("156", "Hàng hóa"), ("1561", "Giá mua hàng hóa"))


def _sorted(*parts: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((row for part in parts for row in part), key=lambda row: row[0]))


CHARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "circular_99_2025": _sorted(_CHART_COMMON, _DEDUCTIONS, _GOODS_200, (
        ("112", "Tiền gửi không kỳ hạn"), ("1121", "Tiền Việt Nam"))),
    "circular_200_2014": _sorted(_CHART_COMMON, _DEDUCTIONS, _GOODS_200, (
        ("112", "Tiền gửi ngân hàng"), ("1121", "Tiền Việt Nam"))),
    "circular_133_2016": _sorted(_CHART_COMMON, (
        ("112", "Tiền gửi ngân hàng"), ("1121", "Tiền Việt Nam"), ("156", "Hàng hóa"))),
}
# The chart a reset gives when none is named: the default preset of mappings/settings.yaml.
DEFAULT_CHART = "circular_99_2025"
CHART = CHARTS[DEFAULT_CHART]
# The company's bank account (the one bank documents name in bank_account_number).
BANK_ACCOUNT = ("0071000123456", "Ngân hàng TMCP Ngoại thương Việt Nam (Vietcombank)",
                "Chi nhánh TP Hồ Chí Minh")


def make_id(kind: str, code: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{code}"))


def goods_account(chart: str) -> str:
    """The stock account of goods in ``chart``: 1561 where 156 has sub-accounts, else 156."""
    return "1561" if any(number == "1561" for number, _ in CHARTS[chart]) else "156"


def stock(code: str, name: str, inventory_account: str = "1561") -> dict[str, Any]:
    return {"stock_id": make_id("stock", code), "stock_code": code, "stock_name": name,
            "branch_id": BRANCH_ID, "inventory_account": inventory_account, "inactive": False,
            "description": "", "dictionary_type": 5}


def unit(name: str) -> dict[str, Any]:
    return {"unit_id": make_id("unit", name), "unit_name": name, "description": "",
            "inactive": False, "dictionary_type": 6}


def inventory_item(code: str, name: str, unit_name: str, *, item_type: int = 0,
                   sale_price: Decimal = Decimal(0), cost: Decimal = Decimal(0),
                   tax_rate: int = 8, inventory_account: str = "1561") -> dict[str, Any]:
    return {"inventory_item_id": make_id("item", code), "inventory_item_code": code,
            "inventory_item_name": name, "inventory_item_type": item_type,
            "unit_id": make_id("unit", unit_name), "unit_name": unit_name, "unit_list": "[]",
            "unit_price": cost, "sale_price1": sale_price, "sale_price2": Decimal(0),
            "sale_price3": Decimal(0), "fixed_sale_price": sale_price, "tax_rate": tax_rate,
            "inventory_account": inventory_account if item_type != 2 else "",
            "cogs_account": "632", "sale_account": "5113" if item_type == 2 else "5111",
            "discount_account": "5211", "sale_off_account": "5213", "return_account": "5212",
            "default_stock_id": None, "minimum_stock": Decimal(0), "inactive": False,
            "is_follow_serial_number": False, "branch_id": BRANCH_ID, "dictionary_type": 3}


def account(number: str, name: str) -> dict[str, Any]:
    """A chart entry as get_dictionary data_type 5 serves it (the sandbox adds grade, parent
    and is_parent from the numbers of the whole chart)."""
    return {"account_id": make_id("account", number), "account_number": number,
            "account_name": name, "inactive": False}


def bank_account(number: str, bank_name: str, branch: str = "") -> dict[str, Any]:
    return {"bank_account_id": make_id("bank_account", number), "bank_account_number": number,
            "bank_name": bank_name, "bank_branch_name": branch, "inactive": False,
            "branch_id": BRANCH_ID, "dictionary_type": 7}


def account_object(code: str, name: str, address: str = "", tel: str = "",
                   email: str = "") -> dict[str, Any]:
    return {"account_object_id": make_id("account_object", code), "account_object_code": code,
            "account_object_name": name, "account_object_type": 1, "is_customer": True,
            "is_vendor": False, "is_employee": False, "address": address, "tel": tel,
            "mobile": tel, "email_address": email, "company_tax_code": "",
            "receive_account": "131", "pay_account": "331", "branch_id": BRANCH_ID,
            "inactive": False, "dictionary_type": 1}


def empty_company(chart: str = DEFAULT_CHART) -> dict[str, list[dict[str, Any]]]:
    """The company setup, with the chart of accounts named (a key of CHARTS)."""
    return {
        "stocks": [stock(w.stock_code, w.stock_name, goods_account(chart)) for w in WAREHOUSES],
        "units": [unit(u) for u in UNITS],
        "inventory_items": [inventory_item(code, name, SHIPPING_ITEM_UNIT, item_type=2)
                            for code, name in SERVICE_ITEMS],
        "account_objects": [],
        "accounts": [account(number, name) for number, name in CHARTS[chart]],
        "bank_accounts": [bank_account(*BANK_ACCOUNT)],
    }


def demo_company(seed: int = 1, chart: str = DEFAULT_CHART) -> tuple[
        dict[str, list[dict[str, Any]]], list[tuple[str, str, Decimal, Decimal]]]:
    """The demo dictionaries, and balances as (item_code, stock_code, quantity, unit cost)."""
    company = empty_company(chart)
    rng = random.Random(seed)
    balances = []
    for product in CATALOGUE:
        name = product.title if product.variant_title == "Default Title" \
            else f"{product.title} - {product.variant_title}"
        company["inventory_items"].append(inventory_item(
            product.sku, name, product.unit, sale_price=product.price, cost=product.cost,
            inventory_account=goods_account(chart)))
        for warehouse in WAREHOUSES:
            balances.append((product.sku, warehouse.stock_code, Decimal(rng.randint(0, 60)),
                             product.cost))
    company["account_objects"] = [account_object(*row) for row in DEMO_CUSTOMERS]
    return company, balances
