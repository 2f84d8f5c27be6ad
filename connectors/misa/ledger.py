"""How the MISA sandbox posts a voucher: its journal rows, by voucher type and each line's accounts.

MISA AMIS derives the double entry from the accounts on each detail line; the sandbox does the
same with the rules below (docs/connectors/misa.md, "The sandbox's ledger"). For each line,
A = ``amount``, D = ``discount_amount``, T = ``vat_amount`` (0 when absent):

- 13 sa_voucher: Dr debit A / Cr credit A; Dr debit T / Cr vat T; Dr discount (else credit) D /
  Cr debit D; with ``is_sale_with_outward`` and a goods item: Dr cost / Cr stock qty × cost,
  stock − qty.
- 12 sa_return: Dr debit A / Cr credit A; Dr vat T / Cr credit T; Dr credit D / Cr discount
  (else debit) D; with ``is_return_with_inward`` and a goods item: Dr stock / Cr cost
  qty × cost, stock + qty.
- 10 sa_discount: Dr debit A / Cr credit A; Dr vat T / Cr credit T.
- 1, 3, 4, 5 (bank and cash): Dr debit A / Cr credit A.
- 7, 18 (stock in), 8 (stock out): stock only, a row with no money on the stock account.
- anything else (20 sa_order, invoices, purchase orders): nothing.

A row that moves stock carries the signed quantity; stock balances move by exactly these
quantities, so the journal and get_list_inventory_balance never disagree. Every pair of rows
has the same amount on both sides, so a posting balances unless an account is missing: those
gaps are reported (``Posting.missing``) and the sandbox refuses the voucher when it validates it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Mapping

from hexaflow.money import MoneyError, round_money, to_decimal

ZERO = Decimal(0)
SERVICE = 2                                   # inventory_item_type of a service: never in stock
MONEY_TYPES = frozenset({1, 3, 4, 5})         # ba_deposit, ba_withdraw, ca_payment, ca_receipt
STOCK_ONLY = {7: 1, 18: 1, 8: -1}             # in_inward, pu_voucher, in_outward: stock sign
DEFAULT_STOCK_ACCOUNT = "1561"                # hàng hóa (Circular 200), for a stock without one
ACCOUNT_FIELDS = ("debit_account", "credit_account", "vat_account", "discount_account",
                  "cost_account", "stock_account")


@dataclass(frozen=True, slots=True)
class Row:
    """One journal row: a debit or a credit on one account, from one detail line."""
    line: int                              # the detail line (1-based)
    account: str
    debit: Decimal
    credit: Decimal
    account_object_code: str | None
    inventory_item_code: str | None
    stock_code: str | None
    quantity: Decimal | None               # signed stock movement at stock_code, None if none


@dataclass(frozen=True)
class Missing:
    """An amount that cannot be posted because the account it goes to is not on the line."""
    line: int
    account_field: str
    amount_field: str
    amount: Decimal


@dataclass
class Posting:
    rows: list[Row] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    @property
    def debit(self) -> Decimal:
        return sum((r.debit for r in self.rows), ZERO)

    @property
    def credit(self) -> Decimal:
        return sum((r.credit for r in self.rows), ZERO)


@dataclass(frozen=True)
class Catalogue:
    """What posting needs from the company: an item's type and cost price, a stock's account."""
    item_type: Callable[[str], int | None]         # None: no such item
    cost: Callable[[str], Decimal]                 # per-unit cost price of an item
    stock_account: Callable[[str], str | None]     # a stock's inventory_account


class LedgerError(Exception):
    """A posting that cannot go into the journal: it does not balance or lacks an account."""


def check_balanced(posting: Posting, org_refid: str) -> None:
    """Raise LedgerError unless ``posting`` lacks nothing and its debits equal its credits."""
    if posting.missing:
        gaps = ", ".join(f"line {m.line} {m.account_field}" for m in posting.missing)
        raise LedgerError(f"request {org_refid} cannot be posted: no account for {gaps}")
    if posting.debit != posting.credit:
        raise LedgerError(f"request {org_refid} does not balance: debit {posting.debit}, "
                          f"credit {posting.credit}")


def amount(value: Any) -> Decimal:
    if value is None or value == "":
        return ZERO
    try:
        return to_decimal(value)
    except MoneyError:
        return ZERO


def quantity_of(line: Mapping[str, Any]) -> Decimal:
    return amount(line.get("main_quantity") or line.get("quantity"))


def post(voucher: Mapping[str, Any], catalogue: Catalogue) -> Posting:
    """The journal rows of ``voucher`` (one MISA request) by the rules in the module docstring."""
    posting = Posting()
    try:
        vtype = int(voucher.get("voucher_type") or 0)
    except (TypeError, ValueError):
        return posting
    header_object = voucher.get("account_object_code")
    for index, line in enumerate(voucher.get("detail") or [], start=1):
        if not isinstance(line, Mapping) or line.get("is_description"):
            continue
        _Line(posting, index, line, line.get("account_object_code") or header_object,
              catalogue).post(vtype, voucher)
    return posting


class _Line:
    """Posts one detail line into a Posting."""

    def __init__(self, posting: Posting, index: int, line: Mapping[str, Any], account_object: Any,
                 catalogue: Catalogue):
        self.posting, self.index, self.line, self.catalogue = posting, index, line, catalogue
        self.account_object = str(account_object) if account_object else None
        item = line.get("inventory_item_code")
        self.item = str(item) if item else None
        stock = line.get("stock_code")
        self.stock = str(stock) if stock else None

    def post(self, vtype: int, voucher: Mapping[str, Any]) -> None:
        a = amount(self.line.get("amount"))
        d = amount(self.line.get("discount_amount"))
        t = amount(self.line.get("vat_amount"))
        if vtype == 13:
            self.pair("debit_account", "credit_account", "amount", a)
            self.pair("debit_account", "vat_account", "vat_amount", t)
            discount_side = "discount_account" if self.line.get("discount_account") else "credit_account"
            self.pair(discount_side, "debit_account", "discount_amount", d)
            if voucher.get("is_sale_with_outward"):
                self.stock_move(-1)
        elif vtype == 12:
            self.pair("debit_account", "credit_account", "amount", a)
            self.pair("vat_account", "credit_account", "vat_amount", t)
            discount_side = "discount_account" if self.line.get("discount_account") else "debit_account"
            self.pair("credit_account", discount_side, "discount_amount", d)
            if voucher.get("is_return_with_inward"):
                self.stock_move(1)
        elif vtype == 10:
            self.pair("debit_account", "credit_account", "amount", a)
            self.pair("vat_account", "credit_account", "vat_amount", t)
        elif vtype in MONEY_TYPES:
            self.pair("debit_account", "credit_account", "amount", a)
        elif vtype in STOCK_ONLY and self.is_goods():
            account = self.line.get("stock_account") or self.catalogue.stock_account(self.stock or "") \
                or DEFAULT_STOCK_ACCOUNT
            self.row(str(account), ZERO, ZERO, STOCK_ONLY[vtype] * quantity_of(self.line))

    def is_goods(self) -> bool:
        kind = self.catalogue.item_type(self.item) if self.item else None
        return kind is not None and kind != SERVICE and self.stock is not None

    def pair(self, debit_field: str, credit_field: str, amount_field: str, value: Decimal) -> None:
        if value == ZERO:
            return
        debit, credit = self.line.get(debit_field), self.line.get(credit_field)
        for name, account in ((debit_field, debit), (credit_field, credit)):
            if not account:
                self.posting.missing.append(Missing(self.index, name, amount_field, value))
        if debit and credit:
            self.row(str(debit), value, ZERO)
            self.row(str(credit), ZERO, value)

    def stock_move(self, sign: int) -> None:
        """The cost of goods issued (sign −1) or taken back (+1), and the stock movement."""
        if not self.is_goods():
            return
        quantity = quantity_of(self.line)
        value = round_money(quantity * self.catalogue.cost(self.item or ""))
        cost, stock = self.line.get("cost_account"), self.line.get("stock_account")
        for name, account in (("cost_account", cost), ("stock_account", stock)):
            if not account:
                self.posting.missing.append(Missing(self.index, name, "quantity", quantity))
        if not cost or not stock:
            return
        if sign < 0:           # Dr cost / Cr stock
            self.row(str(cost), value, ZERO)
            self.row(str(stock), ZERO, value, -quantity)
        else:                  # Dr stock / Cr cost
            self.row(str(stock), value, ZERO, quantity)
            self.row(str(cost), ZERO, value)

    def row(self, account: str, debit: Decimal, credit: Decimal,
            quantity: Decimal | None = None) -> None:
        self.posting.rows.append(Row(self.index, account, debit, credit, self.account_object,
                                     self.item, self.stock, quantity))


def text(value: Decimal) -> str:
    """A Decimal as exact text without an exponent (``1E+5`` → ``100000``)."""
    return format(value, "f")


class Journal:
    """Every posted row, with an index by org_refno so one order's books are cheap to read.
    A row is kept as (its request's header, Row): the header is shared by the request's rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[dict[str, Any], Row]] = []
        self._by_refno: dict[str, list[tuple[dict[str, Any], Row]]] = {}

    def add(self, request: Mapping[str, Any], posting: Posting) -> None:
        voucher = request["payload"]
        refno = voucher.get("org_refno")
        header = {"org_refid": request["org_refid"], "refno_finance": voucher.get("refno_finance"),
                  "org_refno": None if refno is None else str(refno),
                  "voucher_type": voucher.get("voucher_type"), "reftype": voucher.get("reftype"),
                  "posted_date": voucher.get("posted_date") or voucher.get("refdate")}
        entries = [(header, row) for row in posting.rows]
        self.rows.extend(entries)
        self._by_refno.setdefault(str(refno), []).extend(entries)

    def report(self, org_refno: str | None = None) -> dict[str, Any]:
        """GET /_sandbox/ledger: the rows (of one org_refno, when given) and their balances,
        every amount and quantity as exact decimal text."""
        rows = self.rows if org_refno is None else self._by_refno.get(org_refno, [])
        by_account: dict[str, Decimal] = {}
        by_object: dict[str, dict[str, Decimal]] = {}
        by_refno: dict[str, dict[str, Decimal]] = {}
        stock: dict[str, dict[str, Decimal]] = {}
        journal = []
        for header, row in rows:
            change = row.debit - row.credit
            _add(by_account, row.account, change)
            if row.account_object_code:
                _add(by_object.setdefault(row.account_object_code, {}), row.account, change)
            refno = str(header["org_refno"])
            _add(by_refno.setdefault(refno, {}), row.account, change)
            if row.quantity is not None:
                _add(stock.setdefault(refno, {}), f"{row.inventory_item_code}@{row.stock_code}",
                     row.quantity)
            journal.append({**header, "account": row.account, "debit": text(row.debit),
                            "credit": text(row.credit), "account_object_code": row.account_object_code,
                            "inventory_item_code": row.inventory_item_code,
                            "stock_code": row.stock_code,
                            "quantity": None if row.quantity is None else text(row.quantity)})
        return {"journal": journal,
                "balances": {"by_account": _texts(by_account),
                             "by_account_object": {k: _texts(v) for k, v in by_object.items()},
                             "by_org_refno": {k: _texts(v) for k, v in by_refno.items()}},
                "stock": {"by_org_refno": {k: _texts(v) for k, v in stock.items()}}}


def _add(totals: dict[str, Decimal], key: str, value: Decimal) -> None:
    totals[key] = totals.get(key, ZERO) + value


def _texts(totals: Mapping[str, Decimal]) -> dict[str, str]:
    return {key: text(value) for key, value in sorted(totals.items())}
