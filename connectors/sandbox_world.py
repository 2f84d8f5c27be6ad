"""The setup a real shop and a real MISA company have before any sync, shared by both sandboxes.

Both sandboxes must agree on it, and so must the default tables in ``mappings/``
(warehouses.yaml: MISA stock_code <-> Haravan location_id; settings: the shipping service
item, units). ``--data empty`` holds exactly this; ``--data demo`` adds customers, products /
items, stock and orders built from :data:`CATALOGUE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Warehouse:
    location_id: int          # Haravan location id
    location_name: str
    stock_code: str           # MISA stock (kho) code
    stock_name: str
    is_primary: bool = False


WAREHOUSES: tuple[Warehouse, ...] = (
    Warehouse(963414, "Kho HCM", "KHO_HCM", "Kho Hồ Chí Minh", is_primary=True),
    Warehouse(963415, "Kho Hà Nội", "KHO_HN", "Kho Hà Nội"),
    Warehouse(963416, "Kho Đà Nẵng", "KHO_DN", "Kho Đà Nẵng"),
)

# MISA units (ĐVT) that exist in a fresh company.
UNITS: tuple[str, ...] = ("Cái", "Chiếc", "Đôi", "Hộp", "Bộ", "Lần")

# The service item MISA documents use for the shipping fee line.
SHIPPING_ITEM_CODE = "DV_VANCHUYEN"
SHIPPING_ITEM_NAME = "Phí vận chuyển"
SHIPPING_ITEM_UNIT = "Lần"
# Service items of the one-line order documents: a sales allowance and a fee the shop keeps.
SERVICE_ITEMS: tuple[tuple[str, str], ...] = (
    (SHIPPING_ITEM_CODE, SHIPPING_ITEM_NAME), ("DV_GIAMGIA", "Giảm giá hàng bán"),
    ("DV_PHIGIULAI", "Phí giữ lại"))


@dataclass(frozen=True)
class Product:
    sku: str
    title: str
    variant_title: str
    unit: str
    price: Decimal            # selling price, VND
    cost: Decimal             # average cost, VND
    product_type: str


def _catalogue() -> tuple[Product, ...]:
    rows = [
        ("AO-THUN", "Áo thun cotton", "Áo", "Cái", 250000, 120000, ["S", "M", "L"]),
        ("QUAN-JEAN", "Quần jean slim", "Quần", "Cái", 450000, 210000, ["30", "32"]),
        ("GIAY-THE-THAO", "Giày thể thao", "Giày", "Đôi", 890000, 500000, ["40", "42"]),
        ("MU-LUOI-TRAI", "Mũ lưỡi trai", "Phụ kiện", "Chiếc", 150000, 60000, [""]),
        ("TUI-XACH", "Túi xách da", "Phụ kiện", "Chiếc", 1250000, 700000, [""]),
        ("VO-COTTON", "Vớ cotton", "Phụ kiện", "Đôi", 35000, 12000, ["Trắng", "Đen"]),
        ("HOP-QUA", "Hộp quà tặng", "Phụ kiện", "Hộp", 45000, 20000, [""]),
        ("BO-DO-NGU", "Bộ đồ ngủ lụa", "Đồ ngủ", "Bộ", 680000, 320000, ["M", "L"]),
    ]
    products = []
    for base, title, ptype, unit, price, cost, sizes in rows:
        for size in sizes:
            sku = f"{base}-{size}" if size else base
            products.append(Product(sku, title, size or "Default Title", unit,
                                    Decimal(price), Decimal(cost), ptype))
    return tuple(products)


# Every sellable variant, by SKU. Haravan demo products and MISA demo items are built from it,
# so an order's SKUs always exist in MISA.
CATALOGUE: tuple[Product, ...] = _catalogue()
