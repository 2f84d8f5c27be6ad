"""The books of an order's life, checked in one process (requirements §5b, docs/books.md).

A lifecycle is a list of shop operations (create, pay, ship, refund, cancel) played on the
Haravan sandbox's shop (the same HaravanShop the HTTP sandbox serves), with the orders flow
run between them. Each document the flow writes is posted by the MISA sandbox's own ledger
(connectors/misa/ledger.py, the rules behind ``GET /_sandbox/ledger``) as an accountant who
generates and posts every request at once would. After every run, the §5b invariants are
checked against Haravan's own facts:

- money: cash, bank and COD clearing of the order = Haravan's captured − refunded per kind;
- receivable: 131 of the order is 0 once Haravan says it is settled;
- VAT: the VAT payable is the rate's share of the net sales the customer kept, to the đồng
  per document line;
- stock: each item moves by −shipped + restocked (and, on a cancellation, what was still out);
- once: a run after the last changes nothing, and no document changes after it was posted.

``bench/books.py`` runs the same lifecycles at scale and prints the figures.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from hexaflow.connectors.haravan.normalise import normalise
from hexaflow.connectors.haravan.sandbox_store import HaravanShop
from hexaflow.connectors.misa import ledger
from hexaflow.connectors.sandbox_world import CATALOGUE, SERVICE_ITEMS, WAREHOUSES
from hexaflow.plan import Plan, compile_plan
from hexaflow.spec import load_spec
from hexaflow.timeutil import parse_datetime

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
ZERO = Decimal(0)
# The gateways a lifecycle pays with, and the kind each is (mappings/gateways.yaml).
GATEWAYS = {"Tiền mặt": "cash", "Bank transfer": "bank", "COD": "cod"}
COST = {p.sku: p.cost for p in CATALOGUE}
PRICE = {p.sku: p.price for p in CATALOGUE}
SERVICES = {code for code, _ in SERVICE_ITEMS}
STOCK_OF = {w.location_id: w.stock_code for w in WAREHOUSES}
CATALOGUE_FOR_POSTING = ledger.Catalogue(
    item_type=lambda code: 2 if code in SERVICES else (0 if code in COST else None),
    cost=lambda code: COST.get(code, ZERO), stock_account=lambda code: "1561")


def orders_plan(flow: Path = MAPPINGS / "orders.yaml", settings: dict[str, Any] | None = None) -> Plan:
    plan, problems = compile_plan(load_spec(flow))
    assert plan is not None, [p.text() for p in problems]
    for path, value in (settings or {}).items():          # e.g. {"orders.vat.mode": "haravan"}
        *parents, last = path.split(".")
        table = plan.tables["settings"]
        for name in parents:
            table = table[name]
        table[last] = value
    return plan


@dataclass
class Books:
    """One shop, its MISA company's journal, and what hexaflow wrote for each order."""
    plan: Plan
    shop: HaravanShop = field(default_factory=HaravanShop)
    journal: ledger.Journal = field(default_factory=ledger.Journal)
    written: dict[str, Any] = field(default_factory=dict)          # key -> payload posted
    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    documents: int = 0

    # -- the shop ----------------------------------------------------------------------
    def create(self, lines: list[tuple[str, int, int]], *, shipping: int = 0, code_discount: int = 0,
               gateway: str = "Tiền mặt", tax_rate: int | None = None, taxes_included: bool = False) -> int:
        """An order of (sku, quantity, line promotion per unit) lines; its id."""
        body: dict[str, Any] = {
            "line_items": [{"sku": sku, "title": sku, "price": int(PRICE[sku]), "quantity": qty,
                            "total_discount": promo} for sku, qty, promo in lines],
            "customer": {"id": 77, "first_name": "Lan", "last_name": "Nguyễn", "email": "lan@example.vn"},
            "gateway": gateway, "gateway_code": "COD" if gateway == "COD" else "",
            "shipping_lines": [{"title": "Giao hàng", "price": shipping}] if shipping else [],
            "discount_codes": [{"code": "KM", "amount": code_discount}] if code_discount else [],
            "location_id": WAREHOUSES[0].location_id}
        if tax_rate is not None:
            body.update(tax_rate=str(Decimal(tax_rate) / 100), taxes_included=taxes_included)
        order = self.shop.create_order(body)
        self.history[order["id"]] = {}
        return int(order["id"])

    def order(self, oid: int) -> dict[str, Any]:
        return copy.deepcopy(self.shop.orders.get(oid))

    # -- hexaflow and the accountant -------------------------------------------------------
    def sync(self, oid: int) -> int:
        """Run the orders flow on the order as it is now; post what it writes. New documents."""
        record = normalise(self.order(oid))
        outcome = self.plan.evaluate(record, copy.deepcopy(self.history[oid]))
        new = 0
        for doc in outcome.documents:
            if doc.action == "skip" or not doc.key:
                continue
            history = self.history[oid]
            keys = (history.get(doc.route) or {}).get("keys") or []
            if doc.action == "delete":          # withdrawing a sales order: no ledger effect
                continue
            if doc.key in self.written:
                if self.written[doc.key] != doc.payload and doc.payload.get("voucher_type") != 20:
                    self.problems.append(f"order {oid}: {doc.key} changed after it was posted")
                continue
            self.written[doc.key] = doc.payload
            posting = ledger.post(doc.payload, CATALOGUE_FOR_POSTING)
            try:
                ledger.check_balanced(posting, doc.key)
            except ledger.LedgerError as exc:
                self.problems.append(f"order {oid}: {exc}")
            self.journal.add({"org_refid": doc.payload.get("org_refid"), "payload": doc.payload}, posting)
            history[doc.route] = {"key": doc.key, "state": "posted",
                                  "keys": keys if doc.key in keys else keys + [doc.key]}
            new += 1
            self.documents += 1
        return new

    # -- the invariants ----------------------------------------------------------------------
    @property
    def accounts(self) -> dict[str, str]:
        """The accounts the flow posts to: the settings' preset with the company's own over it."""
        settings = self.plan.tables["settings"]
        preset = self.plan.tables["account_presets"][settings["account_preset"]]
        return {**preset["accounts"], **(settings.get("accounts") or {})}

    def report(self, oid: int) -> dict[str, Any]:
        """The order's part of the ledger, as ``GET /_sandbox/ledger?org_refno=`` serves it."""
        return self.journal.report(str(oid))

    def balances(self, oid: int) -> dict[str, Decimal]:
        report = self.report(oid)
        return {k: Decimal(v) for k, v in report["balances"]["by_org_refno"].get(str(oid), {}).items()}

    def stock(self, oid: int) -> dict[str, Decimal]:
        report = self.report(oid)
        return {k: Decimal(v) for k, v in report["stock"]["by_org_refno"].get(str(oid), {}).items()
                if Decimal(v)}

    def check(self, oid: int) -> list[str]:
        """The §5b invariants of one order, each broken one as a sentence."""
        o, b = self.order(oid), self.balances(oid)
        accounts = self.accounts
        out: list[str] = []
        got_money: dict[str, Decimal] = {}
        want_money: dict[str, Decimal] = {kind: ZERO for kind in ("cash", "bank", "cod")}
        for kind, account in (("cash", accounts["cash"]), ("bank", accounts["bank"]),
                              ("cod", accounts["cod_clearing"])):
            got_money[kind] = b.get(account, ZERO)
        last_in = o["gateway"]
        for tx in o["transactions"]:
            if tx["kind"] in ("capture", "sale") and tx.get("gateway"):
                last_in = tx["gateway"]
            gateway = tx.get("gateway") or (last_in if tx["kind"] == "refund" else o["gateway"])
            kind = "cod" if tx.get("is_cod_gateway") else GATEWAYS.get(gateway, "bank")
            amount = Decimal(str(tx["amount"]))
            if tx["kind"] in ("capture", "sale") and tx.get("status") != "failure":
                want_money[kind] += amount
            elif tx["kind"] == "refund":
                want_money[kind] += amount            # refunds are negative
        if got_money != want_money:
            out.append(f"money: MISA {got_money} but Haravan captured − refunded {want_money}")
        receivable = b.get(accounts["receivable"], ZERO)
        if settled(o) and receivable != 0:
            out.append(f"receivable: 131 is {receivable} on a settled order ({o['financial_status']}, "
                       f"{o['fulfillment_status']}, {o['cancelled_status']})")
        out += self._check_vat(oid, b, accounts)
        out += self._check_stock(o)
        return out

    def _check_vat(self, oid: int, b: dict[str, Decimal], accounts: dict[str, str]) -> list[str]:
        vat, o = self.plan.tables["settings"]["orders"]["vat"], self.order(oid)
        payable = -b.get(accounts["vat_output"], ZERO)
        tax = Decimal(str(o.get("total_tax") or 0))
        if tax > 0:              # Haravan's own tax, as it is, once everything shipped and stayed
            whole = not o["refunds"] and all(li["fulfillable_quantity"] == 0 for li in o["line_items"]) \
                and o["cancelled_status"] != "cancelled" and o["fulfillments"]
            return [f"VAT: payable {payable} but Haravan's tax is {tax}"] if whole and payable != tax else []
        if vat["mode"] != "prices_include_vat" or Decimal(str(vat["rate"])) <= 0:
            return [f"VAT: {payable} booked with no VAT to book"] if payable else []
        rate = Decimal(str(vat["rate"]))
        sales = ("revenue", "service_revenue", "sales_discount", "sales_return", "sales_allowance")
        # Each account once: under Circular 133 returns and allowances are revenue's own 5111.
        kept = -sum((b.get(a, ZERO) for a in {accounts[n] for n in sales}), ZERO) + payable   # with VAT
        # Each document line rounds its pre-tax amount once: a đồng of tolerance per line.
        lines = sum(1 for r in self.report(oid)["journal"] if r["account"] == accounts["vat_output"])
        share = kept * rate / (100 + rate)
        if abs(payable - share) > max(1, lines):
            return [f"VAT: payable {payable} but {rate}% of the kept sales {kept} is {share:.2f}"]
        return []

    def _check_stock(self, o: dict[str, Any]) -> list[str]:
        want: dict[str, Decimal] = {}
        stock = STOCK_OF[o["location_id"]]
        quantity = {li["id"]: li["quantity"] for li in o["line_items"]}
        sku = {li["id"]: li["sku"] for li in o["line_items"]}
        shipped: dict[int, int] = {}
        for f in o["fulfillments"]:
            for fl in f["line_items"]:
                shipped[fl["id"]] = shipped.get(fl["id"], 0) + fl["quantity"]
                place = f"{sku[fl['id']]}@{STOCK_OF[f['location_id']]}"
                want[place] = want.get(place, ZERO) - fl["quantity"]
        back: dict[int, int] = {}
        refunded: dict[int, int] = {}
        cancelled_at = o.get("cancelled_at") if o["cancelled_status"] == "cancelled" else None
        for r in o["refunds"]:
            if cancelled_at and parse_datetime(r["created_at"]) > parse_datetime(cancelled_at):
                continue         # after the cancellation: money only (docs/books.md)
            for rl in r["refund_line_items"]:
                line = rl["line_item_id"]
                refunded[line] = refunded.get(line, 0) + rl["quantity"]
                returned = max(0, refunded[line] + shipped.get(line, 0) - quantity[line]) - back.get(line, 0)
                back[line] = back.get(line, 0) + returned
                if r.get("restock") and returned:
                    place = f"{sku[line]}@{stock}"
                    want[place] = want.get(place, ZERO) + returned
        if o["cancelled_status"] == "cancelled" and self.plan.tables["settings"]["orders"]["restock_on_cancel"]:
            for line, sent in shipped.items():
                out = sent - back.get(line, 0)
                if out:
                    place = f"{sku[line]}@{stock}"
                    want[place] = want.get(place, ZERO) + out
        want = {k: v for k, v in want.items() if v}
        got = self.stock(o["id"])
        return [] if got == want else [f"stock: MISA moved {got} but Haravan {want}"]


def settled(o: dict[str, Any]) -> bool:
    """Haravan says the order is done: paid in full and shipped, or cancelled with every đồng
    taken given back. Money kept from a partly paid order whose goods all went back stays on the
    customer's account for the accountant (docs/books.md)."""
    captured, refunded = HaravanShop.paid_amount(o)
    cancelled = o["cancelled_status"] == "cancelled"
    money_done = captured >= Decimal(str(o["total_price"])) or (cancelled and captured == refunded)
    goods_done = o["cancelled_status"] == "cancelled" or all(
        li["fulfillable_quantity"] == 0 for li in o["line_items"])
    return money_done and goods_done
