"""What a MISA voucher request will move in stock once posted (MisaConnector.stock_moves,
mechanics.voucher_stock_moves): the engine holds it while the request waits for the accountant,
so it must be exactly what the sandbox's posting moves (connectors/misa/ledger.py)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from hexaflow.connector import StockMove
from connectors.misa import ledger
from connectors.misa.connector import MisaConnector

ACCOUNTS = {"debit_account": "131", "credit_account": "5111", "cost_account": "632",
            "stock_account": "1561", "vat_account": "33311"}


def goods(item: str, quantity, stock: str | None = "KHO_HCM", **more) -> dict:
    return {"inventory_item_code": item, "stock_code": stock, "quantity": quantity,
            "amount": 100000, **ACCOUNTS, **more}


CASES = [
    ("a sales voucher with outward issues its goods lines",
     {"voucher_type": 13, "is_sale_with_outward": True,
      "detail": [goods("AO-THUN-M", 2), goods("QUAN-JEAN-32", 1),
                 goods("DV_VANCHUYEN", 1, stock=None)]},
     [("KHO_HCM", "AO-THUN-M", -2), ("KHO_HCM", "QUAN-JEAN-32", -1)]),
    ("a sales voucher without outward moves nothing",
     {"voucher_type": 13, "is_sale_with_outward": False, "detail": [goods("AO-THUN-M", 2)]}, []),
    ("a restocked sales return takes its goods back",
     {"voucher_type": 12, "is_return_with_inward": True, "detail": [goods("AO-THUN-M", 1)]},
     [("KHO_HCM", "AO-THUN-M", 1)]),
    ("a sales return without restock moves nothing",
     {"voucher_type": 12, "is_return_with_inward": False, "detail": [goods("AO-THUN-M", 1)]}, []),
    ("a sales order moves nothing",
     {"voucher_type": 20, "detail": [goods("AO-THUN-M", 1)]}, []),
    ("stock vouchers move without a flag: in (7) and out (8)",
     {"voucher_type": 8, "detail": [goods("AO-THUN-M", 3)]}, [("KHO_HCM", "AO-THUN-M", -3)]),
    ("main_quantity is the quantity posted when given; description lines move nothing",
     {"voucher_type": 13, "is_sale_with_outward": True,
      "detail": [goods("AO-THUN-M", 1, main_quantity=12), goods("AO-THUN-M", 5, is_description=True)]},
     [("KHO_HCM", "AO-THUN-M", -12)]),
]


@pytest.mark.parametrize("name, payload, moves", CASES, ids=[c[0] for c in CASES])
def test_the_stock_a_voucher_will_move_is_what_posting_it_moves(name, payload, moves):
    expected = [StockMove(p, i, Decimal(q)) for p, i, q in moves]
    assert MisaConnector.stock_moves("voucher", "upsert", payload) == expected
    # The sandbox posts the same voucher to the same movements (every item here is goods
    # except the shipping service item).
    catalogue = ledger.Catalogue(item_type=lambda code: 2 if code == "DV_VANCHUYEN" else 0,
                                 cost=lambda code: Decimal(1000), stock_account=lambda code: "1561")
    posted = [StockMove(r.stock_code, r.inventory_item_code, r.quantity)
              for r in ledger.post(payload, catalogue).rows if r.quantity is not None]
    assert posted == expected


def test_withdrawing_a_request_or_a_dictionary_entry_moves_nothing():
    sale = {"voucher_type": 13, "is_sale_with_outward": True, "detail": [goods("AO-THUN-M", 2)]}
    assert MisaConnector.stock_moves("voucher", "delete", sale) == []
    assert MisaConnector.stock_moves("dictionary", "upsert", {"dictionary_type": 3}) == []


def test_codes_are_read_as_the_balance_list_reads_them():
    sale = {"voucher_type": 13, "is_sale_with_outward": True,
            "detail": [goods(" PAD-1 ", 1, stock="KHO_HCM ")]}
    assert MisaConnector.stock_moves("voucher", "upsert", sale) == [
        StockMove("KHO_HCM", "PAD-1", Decimal(-1))]
