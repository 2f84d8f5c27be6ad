"""Each lifecycle of the accountant's review (issue 14's table) as a named test: the books at the
end, as the accountant posts every request (tests/flows/books.py; docs/books.md)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from books import Books, orders_plan
from hexaflow.plan import MappingError

D = Decimal


def books(**settings) -> Books:
    return Books(orders_plan(settings=settings))


def paid_and_shipped(b: Books, lines, gateway: str = "Tiền mặt", shipping: int = 30000) -> int:
    oid = b.create(lines, shipping=shipping, gateway=gateway)
    b.shop.pay_order(oid, gateway)
    b.shop.create_fulfillment(oid, {})
    b.sync(oid)
    return oid


def line_id(b: Books, oid: int, sku: str) -> int:
    return next(li["id"] for li in b.order(oid)["line_items"] if li["sku"] == sku)


class Balances(dict):
    """An order's balances by account; an account it never touched is 0."""
    def __missing__(self, account: str) -> Decimal:
        return D(0)


def done(b: Books, oid: int) -> Balances:
    b.sync(oid)
    assert b.check(oid) == [] and b.problems == []
    assert b.sync(oid) == 0                       # nothing twice
    return Balances(b.balances(oid))


def test_partial_refunds_with_restock_at_the_shops_own_amounts_clear_the_receivable():
    b = books()
    oid = paid_and_shipped(b, [("AO-THUN-M", 1, 0), ("QUAN-JEAN-32", 1, 0)])
    for sku, amount in (("AO-THUN-M", 250000), ("QUAN-JEAN-32", 280000)):
        b.shop.create_refund(oid, {"restock": True, "transactions": [{"amount": amount}],
                                   "refund_line_items": [{"line_item_id": line_id(b, oid, sku), "quantity": 1}]})
        b.sync(oid)
    bal = done(b, oid)
    assert bal["131"] == 0
    # The shirt's refund is its share of the sale; the jeans came back for less than theirs: the
    # shop keeps the difference (711). The customer kept the shipping.
    assert bal["711"] == -(D(450000) - 280000) and -bal["5113"] == D(27778)
    assert b.stock(oid) == {}                     # both restocked


def test_refunds_without_restock_are_an_allowance_and_a_return_with_their_vat():
    b = books()
    oid = paid_and_shipped(b, [("QUAN-JEAN-32", 2, 0)])
    b.shop.create_refund(oid, {"transactions": [{"amount": 50000}], "note": "Bồi thường"})
    b.shop.create_refund(oid, {"transactions": [{"amount": 450000}], "restock": False,
                               "refund_line_items": [{"line_item_id": line_id(b, oid, "QUAN-JEAN-32"),
                                                      "quantity": 1}]})
    bal = done(b, oid)
    assert bal["131"] == 0
    assert bal["5213"] == D(46296) and bal["5212"] == D(416667)          # 50,000 and 450,000 net of 8 %
    assert -bal["33311"] == D(66667) + D(2222) - D(3704) - D(33333)      # VAT of what the customer kept
    assert b.stock(oid) == {"QUAN-JEAN-32@KHO_HCM": D(-2)}             # the defective unit stays out


def test_a_shipping_only_refund_reverses_the_shipping_revenue_and_its_vat():
    b = books()
    oid = paid_and_shipped(b, [("AO-THUN-M", 1, 0)])
    b.shop.create_refund(oid, {"transactions": [{"amount": 30000}], "note": "Hoàn phí ship"})
    bal = done(b, oid)
    # The shipping line comes back (BTL_ on the shipping item): its revenue and VAT are undone;
    # what stays is the shirt's sale, 250,000 with 8 % inside.
    assert [d["inventory_item_code"] for d in b.written[f"BTL_{oid}"]["detail"]] == ["DV_VANCHUYEN"]
    assert bal["131"] == 0 and bal["5113"] == 0 and bal["1111"] == D(250000)
    assert (-bal["5111"], -bal["33311"]) == (D(231481), D(18519))


def test_a_full_return_by_refund_without_cancelling_clears_the_receivable():
    b = books()
    oid = paid_and_shipped(b, [("AO-THUN-M", 2, 0)])
    order = b.order(oid)
    b.shop.create_refund(oid, {"restock": True, "transactions": [{"amount": order["total_price"]}],
                               "refund_line_items": [{"line_item_id": line_id(b, oid, "AO-THUN-M"), "quantity": 2}]})
    bal = done(b, oid)
    assert bal["131"] == 0 and bal.get("1111", D(0)) == 0 and -bal["33311"] == 0
    assert b.stock(oid) == {}


def test_paid_cancelled_before_delivery_keeping_30000_is_a_fee_in_other_income():
    b = books()
    oid = b.create([("AO-THUN-M", 2, 0)], shipping=30000)
    b.shop.pay_order(oid, "Tiền mặt")
    b.sync(oid)
    b.shop.cancel_order(oid, {"amount": str(D(str(b.order(oid)["total_price"])) - 30000), "reason": "customer"})
    bal = done(b, oid)
    assert bal["131"] == 0 and bal["711"] == D(-30000) and bal["1111"] == D(30000)


def test_partly_shipped_rest_cancelled_books_a_sale_for_what_shipped():
    b = books()
    oid = b.create([("AO-THUN-M", 4, 0)], shipping=0)
    b.shop.pay_order(oid, "Tiền mặt")
    b.shop.create_fulfillment(oid, {"line_items": [{"id": line_id(b, oid, "AO-THUN-M"), "quantity": 2}]})
    b.sync(oid)
    # The rest is cancelled: the two units not shipped are refunded with their money.
    b.shop.create_refund(oid, {"transactions": [{"amount": 500000}],
                               "refund_line_items": [{"line_item_id": line_id(b, oid, "AO-THUN-M"), "quantity": 2}]})
    bal = done(b, oid)
    assert bal["131"] == 0 and bal["1111"] == D(500000)
    assert -(bal["5111"] + bal["33311"]) == D(500000)                  # revenue + VAT of the 2 shipped
    assert b.stock(oid) == {"AO-THUN-M@KHO_HCM": D(-2)}


def test_a_bank_paid_order_refunded_is_a_bank_payment_with_the_bank_account():
    b = books()
    oid = paid_and_shipped(b, [("AO-THUN-M", 1, 0)], gateway="Bank transfer")
    b.shop.create_refund(oid, {"transactions": [{"amount": 50000}]})
    bal = done(b, oid)
    payment = b.written[f"PC_{oid}"]
    assert (payment["voucher_type"], payment["reftype"]) == (3, 1510)
    assert payment["bank_account_number"] == "0071000123456"
    assert payment["detail"][0]["credit_account"] == "1121" and bal["131"] == 0


def test_a_deposit_then_the_balance_are_two_receipts_on_their_own_days():
    b = books()
    oid = b.create([("GIAY-THE-THAO-42", 1, 0)], shipping=30000)
    b.shop.pay_order(oid, "Bank transfer", 200000)
    b.sync(oid)
    b.shop.pay_order(oid, "Bank transfer")
    b.shop.create_fulfillment(oid, {})
    bal = done(b, oid)
    first, second = b.written[f"PT_{oid}"], b.written[f"PT_{oid}_2"]
    assert (first["total_amount"], second["total_amount"]) == (200000, 720000)
    assert first["refdate"] <= second["refdate"]
    assert bal["131"] == 0 and bal["1121"] == D(920000)


def test_prices_without_vat_and_no_haravan_tax_is_refused_with_the_fix():
    b = books(**{"orders.vat.mode": "prices_exclude_vat"})
    oid = b.create([("AO-THUN-M", 1, 0)])
    with pytest.raises(MappingError, match="prices exclude VAT.*set vat.mode"):
        b.sync(oid)


def test_haravan_tax_on_top_is_used_as_it_is():
    b = books()
    oid = b.create([("AO-THUN-M", 2, 0)], shipping=0, tax_rate=8)
    b.shop.pay_order(oid, "Tiền mặt")
    b.shop.create_fulfillment(oid, {})
    bal = done(b, oid)
    assert -bal["33311"] == D(str(b.order(oid)["total_tax"])) == D(40000)
    assert -bal["5111"] == D(500000) and bal["131"] == 0


def test_cod_collected_goes_to_the_cod_clearing_account():
    b = books()
    oid = b.create([("AO-THUN-M", 1, 0)], gateway="COD")
    fulfilment = b.shop.create_fulfillment(oid, {})
    b.sync(oid)
    b.shop.move_carrier(oid, fulfilment["id"], {"status": "delivered", "cod": "codpaid"})
    bal = done(b, oid)
    assert bal["1388"] == D(str(b.order(oid)["total_price"])) and bal.get("1121", D(0)) == 0
    assert bal["131"] == 0


def test_under_circular_133_discounts_are_in_the_price_and_deductions_reduce_revenue_directly():
    b = books(account_preset="circular_133_2016")
    oid = paid_and_shipped(b, [("QUAN-JEAN-32", 2, 50000)])
    b.shop.create_refund(oid, {"transactions": [{"amount": 50000}], "note": "Bồi thường"})
    b.shop.create_refund(oid, {"transactions": [{"amount": 400000}], "restock": True,
                               "refund_line_items": [{"line_item_id": line_id(b, oid, "QUAN-JEAN-32"),
                                                      "quantity": 1}]})
    bal = done(b, oid)
    assert bal["131"] == 0
    # No 521 under Circular 133, and 156 has no sub-accounts: what the books touch is this.
    assert set(bal) <= {"131", "1111", "5111", "5113", "33311", "632", "156"}, bal
    # Sold 2 × 400,000 net of the promotion; the goodwill and the returned unit come off 5111.
    assert -bal["5111"] == D(740740) - D(46296) - D(370370)          # each net of 8 % VAT
    assert b.stock(oid) == {"QUAN-JEAN-32@KHO_HCM": D(-1)}
