"""What the MISA sandbox rejects when it processes a voucher request.

MISA validates requests asynchronously and reports each failure in the callback item
(``success: false, error_code, error_message``). The per-item error codes MISA uses are not
documented; the sandbox reports ``InvalidParam`` with a Vietnamese message and its English
gloss, which is the code MISA uses for invalid parameters everywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Mapping

from hexaflow.money import MoneyError, to_decimal

from . import ledger

# voucher_type -> object name (reference §3).
VOUCHER_TYPES = {1: "ba_deposit", 3: "ba_withdraw", 4: "ca_payment", 5: "ca_receipt",
                 7: "in_inward", 8: "in_outward", 10: "sa_discount", 11: "sa_invoice",
                 12: "sa_return", 13: "sa_voucher", 15: "pu_invoice", 17: "pu_service",
                 18: "pu_voucher", 20: "sa_order", 21: "pu_order"}
# Vouchers whose lines are goods: header totals = sale − discount + VAT.
ITEM_VOUCHERS = frozenset({10, 11, 12, 13, 15, 17, 18, 20, 21})
# Cash and bank vouchers: header total = Σ line amounts.
CASH_VOUCHERS = frozenset({1, 3, 4, 5})
STOCK_VOUCHERS = frozenset({7, 8})
VAT_RATES = frozenset({Decimal(r) for r in (0, 5, 8, 10, -1, -2, -3)})
MAX_DETAIL_LINES = 500
ZERO = Decimal(0)
# Bank and cash documents, and the side of their lines that is the money (reference §3.3):
# a receipt debits the money account, a payment credits it. Sales vouchers are documents of
# either kind by their reftype: 3531 paid in cash, 3537 paid by bank transfer.
BANK_TYPES = {1: "debit_account", 3: "credit_account"}
CASH_TYPES = {5: "debit_account", 4: "credit_account"}
SALES_VOUCHER, CASH_SALE, BANK_SALE = 13, 3531, 3537
CASH_PREFIX, BANK_PREFIX = "111", "112"      # tiền mặt, tiền gửi ngân hàng (Circular 200)


@dataclass(frozen=True)
class Problem:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"error_code": self.code, "error_message": self.message}


def _invalid(vi: str, en: str) -> Problem:
    return Problem("InvalidParam", f"{vi} ({en})")


@dataclass
class Lookup:
    """What the company holds; the sandbox passes its dictionaries in."""
    has_customer: Callable[[str], bool]
    has_item: Callable[[str], bool]
    has_stock: Callable[[str], bool]
    refno_owner: Callable[[str], str | None]     # org_refid already using a refno_finance
    # An account's sub-accounts ([] for an account that takes postings), None when the chart
    # has no such account.
    sub_accounts: Callable[[str], list[str] | None]
    has_bank_account: Callable[[str], bool]
    catalogue: ledger.Catalogue                  # what posting needs: item types, costs
    reject_duplicate_refno: bool = True
    reject_parent_accounts: bool = True


def _num(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return to_decimal(value)
    except MoneyError:
        return None


def _sum(lines: list[Mapping[str, Any]], name: str) -> Decimal:
    return sum((_num(line.get(name)) or ZERO for line in lines), ZERO)


def validate_voucher(voucher: Mapping[str, Any], lookup: Lookup) -> list[Problem]:
    problems: list[Problem] = []
    try:
        vtype = int(voucher["voucher_type"])
    except (KeyError, TypeError, ValueError):    # missing, None, or not a number
        return [_invalid("Thiếu hoặc sai loại chứng từ voucher_type",
                         "voucher_type is missing or not a number")]
    if vtype not in VOUCHER_TYPES:
        return [_invalid(f"Loại chứng từ voucher_type = {vtype} không được hỗ trợ",
                         f"unknown voucher_type {vtype}")]
    for name in ("org_refid", "refdate"):
        if not voucher.get(name):
            problems.append(_invalid(f"Thiếu trường bắt buộc {name}",
                                     f"required field {name} is missing"))
    if not voucher.get("refno_finance") and not voucher.get("auto_refno"):
        problems.append(_invalid("Thiếu số chứng từ refno_finance (hoặc auto_refno = true)",
                                 "refno_finance is required unless auto_refno is true"))
    detail = voucher.get("detail")
    if not isinstance(detail, list) or not detail:
        problems.append(_invalid("Chứng từ phải có ít nhất một dòng chi tiết (detail)",
                                 "detail must hold at least one line"))
        return problems
    if len(detail) > MAX_DETAIL_LINES:
        problems.append(_invalid(f"Số dòng chi tiết vượt quá {MAX_DETAIL_LINES}",
                                 f"more than {MAX_DETAIL_LINES} detail lines"))
    lines = [line for line in detail if isinstance(line, Mapping)]

    customer = voucher.get("account_object_code")
    if vtype in ITEM_VOUCHERS | CASH_VOUCHERS and not customer:
        problems.append(_invalid("Thiếu mã đối tượng account_object_code",
                                 "account_object_code is required"))
    codes = {customer} if customer else set()
    codes |= {line.get("account_object_code") for line in lines if line.get("account_object_code")}
    for code in sorted(codes):
        if not lookup.has_customer(str(code)):
            problems.append(_invalid(f"Mã đối tượng <{code}> không tồn tại trong danh mục",
                                     f"unknown account object code {code}"))

    for index, line in enumerate(lines, start=1):
        if not line.get("is_description"):     # text-only lines carry no item or amount
            problems.extend(_check_line(vtype, index, line, lookup))

    if vtype in ITEM_VOUCHERS:
        problems.extend(_check_item_totals(voucher, lines))
    elif vtype in CASH_VOUCHERS:
        total, lines_total = _num(voucher.get("total_amount")), _sum(lines, "amount")
        if total is None:
            problems.append(_invalid("Thiếu tổng tiền total_amount", "total_amount is missing"))
        elif total != lines_total:
            problems.append(_invalid(
                f"Tổng tiền total_amount = {total} khác tổng tiền chi tiết {lines_total}",
                "total_amount differs from the sum of detail amounts"))

    problems.extend(_check_accounts(lines, lookup))
    problems.extend(_check_money_documents(vtype, voucher, lines, lookup))
    problems.extend(_check_posting(vtype, voucher, lookup))

    refno = voucher.get("refno_finance")
    if refno and lookup.reject_duplicate_refno:
        owner = lookup.refno_owner(str(refno))
        if owner and owner != voucher.get("org_refid"):
            problems.append(_invalid(f"Số chứng từ <{refno}> đã tồn tại",
                                     "refno_finance already used by another request"))
    return problems


def _check_line(vtype: int, index: int, line: Mapping[str, Any], lookup: Lookup) -> list[Problem]:
    problems: list[Problem] = []
    where = f"dòng {index}"
    if vtype in ITEM_VOUCHERS | STOCK_VOUCHERS:
        item = line.get("inventory_item_code")
        if not item:
            problems.append(_invalid(f"{where}: thiếu mã hàng inventory_item_code",
                                     f"line {index}: inventory_item_code is missing"))
        elif not lookup.has_item(str(item)):
            problems.append(_invalid(f"{where}: mã hàng <{item}> không tồn tại trong danh mục",
                                     f"line {index}: unknown inventory item code {item}"))
        if _num(line.get("quantity")) is None:
            problems.append(_invalid(f"{where}: thiếu số lượng quantity",
                                     f"line {index}: quantity is missing"))
    if vtype in CASH_VOUCHERS:
        for name in ("amount", "debit_account", "credit_account"):
            if line.get(name) in (None, ""):
                problems.append(_invalid(f"{where}: thiếu {name}",
                                         f"line {index}: {name} is missing"))
    stock = line.get("stock_code")
    if stock and not lookup.has_stock(str(stock)):
        problems.append(_invalid(f"{where}: mã kho <{stock}> không tồn tại",
                                 f"line {index}: unknown stock code {stock}"))
    if "vat_rate" in line and line.get("vat_rate") is not None:
        rate = _num(line.get("vat_rate"))
        if rate is None or rate not in VAT_RATES:
            problems.append(_invalid(
                f"{where}: thuế suất GTGT {line.get('vat_rate')} không hợp lệ",
                f"line {index}: vat_rate must be one of 0, 5, 8, 10, -1, -2, -3"))
    return problems


def _check_item_totals(voucher: Mapping[str, Any], lines: list[Mapping[str, Any]]) -> list[Problem]:
    problems: list[Problem] = []
    sale, discount, vat = _sum(lines, "amount"), _sum(lines, "discount_amount"), \
        _sum(lines, "vat_amount")
    checks = (("total_sale_amount", sale, "tiền hàng"),
              ("total_discount_amount", discount, "tiền chiết khấu"),
              ("total_vat_amount", vat, "tiền thuế GTGT"))
    for name, lines_value, label in checks:
        header = _num(voucher.get(name)) or ZERO
        if header != lines_value:
            problems.append(_invalid(
                f"Tổng {label} {name} = {header} khác tổng chi tiết {lines_value}",
                f"{name} differs from the sum of the lines"))
    total = _num(voucher.get("total_amount"))
    expected = (_num(voucher.get("total_sale_amount")) or ZERO) \
        - (_num(voucher.get("total_discount_amount")) or ZERO) \
        + (_num(voucher.get("total_vat_amount")) or ZERO)
    if total is None:
        problems.append(_invalid("Thiếu tổng tiền thanh toán total_amount",
                                 "total_amount is missing"))
    elif total != expected:
        problems.append(_invalid(
            f"Tổng tiền thanh toán total_amount = {total} khác {expected} "
            f"(tiền hàng − chiết khấu + thuế)",
            "total_amount must equal total_sale_amount − total_discount_amount + total_vat_amount"))
    return problems


def _check_accounts(lines: list[Mapping[str, Any]], lookup: Lookup) -> list[Problem]:
    """Every account a line names is in the chart and takes postings (no sub-accounts)."""
    problems: list[Problem] = []
    for index, line in enumerate(lines, start=1):
        for name in ledger.ACCOUNT_FIELDS:
            number = line.get(name)
            if number in (None, ""):
                continue
            subs = lookup.sub_accounts(str(number))
            if subs is None:
                problems.append(_invalid(
                    f"dòng {index}: tài khoản {name} = {number} không có trong hệ thống tài khoản",
                    f"line {index}: {name} {number} is not in the chart of accounts"))
            elif subs and lookup.reject_parent_accounts:
                listed = ", ".join(subs)
                problems.append(_invalid(
                    f"dòng {index}: tài khoản {name} = {number} là tài khoản tổng hợp, "
                    f"phải hạch toán vào tài khoản chi tiết ({listed})",
                    f"line {index}: {name} {number} has sub-accounts ({listed}); post to one of them"))
    return problems


def _money_kind(vtype: int, voucher: Mapping[str, Any]) -> tuple[str, str] | None:
    """("bank" | "cash", the line field that is the money side) of a money document."""
    if vtype in BANK_TYPES:
        return "bank", BANK_TYPES[vtype]
    if vtype in CASH_TYPES:
        return "cash", CASH_TYPES[vtype]
    if vtype == SALES_VOUCHER:
        reftype = _num(voucher.get("reftype"))
        if reftype == BANK_SALE:
            return "bank", "debit_account"
        if reftype == CASH_SALE:
            return "cash", "debit_account"
    return None


def _check_money_documents(vtype: int, voucher: Mapping[str, Any], lines: list[Mapping[str, Any]],
                           lookup: Lookup) -> list[Problem]:
    """A bank document names one of the company's bank accounts; the money side of a cash
    document is not a bank account and that of a bank document is not cash."""
    kind = _money_kind(vtype, voucher)
    if kind is None:
        return []
    problems: list[Problem] = []
    money, side = kind
    if money == "bank":
        number = voucher.get("bank_account_number")
        if not number:
            problems.append(_invalid(
                "Chứng từ ngân hàng phải có tài khoản ngân hàng bank_account_number",
                "a bank document needs bank_account_number, one of the company's bank accounts"))
        elif not lookup.has_bank_account(str(number)):
            problems.append(_invalid(
                f"Tài khoản ngân hàng bank_account_number = {number} không có trong danh mục",
                f"bank_account_number {number} is not a bank account of the company"))
    wrong, label_vi, label_en, use = (
        (BANK_PREFIX, "tài khoản ngân hàng", "a bank account", "a bank document")
        if money == "cash" else (CASH_PREFIX, "tài khoản tiền mặt", "cash", "a cash document"))
    for index, line in enumerate(lines, start=1):
        account = str(line.get(side) or "")
        if account.startswith(wrong):
            problems.append(_invalid(
                f"dòng {index}: chứng từ {'tiền mặt' if money == 'cash' else 'ngân hàng'} "
                f"không được hạch toán {side} vào {label_vi} {account}",
                f"line {index}: the {side} of a {money} document is {label_en} ({account}); "
                f"use {use}"))
    return problems


def _check_posting(vtype: int, voucher: Mapping[str, Any], lookup: Lookup) -> list[Problem]:
    """The voucher can be posted and its journal balances (ledger.post)."""
    posting = ledger.post(voucher, lookup.catalogue)
    problems: list[Problem] = []
    for gap in posting.missing:
        if vtype in CASH_VOUCHERS:
            continue                    # _check_line already names the missing account
        if gap.amount_field == "quantity":
            problems.append(_invalid(
                f"dòng {gap.line}: xuất/nhập kho cần {gap.account_field} trên dòng hàng hóa",
                f"line {gap.line}: the goods line moves stock (is_sale_with_outward / "
                f"is_return_with_inward), so it needs {gap.account_field}"))
        else:
            problems.append(_invalid(
                f"dòng {gap.line}: thiếu {gap.account_field} để hạch toán {gap.amount_field} = "
                f"{gap.amount} (bút toán không cân)",
                f"line {gap.line}: {gap.amount_field} {gap.amount} has no {gap.account_field} "
                f"to post to; the entry would not balance"))
    if not posting.missing and posting.debit != posting.credit:
        problems.append(_invalid(
            f"Bút toán không cân: tổng Nợ {posting.debit} khác tổng Có {posting.credit}",
            f"the journal entry does not balance: debit {posting.debit}, credit {posting.credit}"))
    return problems
