"""End to end: Haravan customers and orders → MISA AMIS (R-CUS-1..4, R-ORD-1..6, R-CAN-1..8).

Both sandboxes run in-process on loopback HTTP with ``data="empty"`` (the shop's locations, the
company's stocks, units and shipping item). Each test acts as the shop does on Haravan (creates
customers and orders through the real ``/com/`` routes; pays, fulfils, cancels and refunds) and as
the accountant does in AMIS (generates a request), runs the packaged flows
``mappings/customers.yaml`` and ``mappings/orders.yaml`` through the CLI, and checks MISA through
its admin routes (``/_sandbox/requests``, ``/_sandbox/dictionary``). After every scenario, running
all flows again must change nothing in MISA.
"""
from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import yaml

from e2e_world import ITEMS, World

VN = timezone(timedelta(hours=7))
ADDRESS = {"address1": "182 Lê Đại Hành", "ward": "Phường 15", "district": "Quận 11",
           "province": "Hồ Chí Minh"}
ADDRESS_TEXT = "182 Lê Đại Hành, Phường 15, Quận 11, Hồ Chí Minh"
SALES_ORDER, SALES_VOUCHER, CASH_RECEIPT, BANK_RECEIPT, CASH_PAYMENT, SALES_RETURN = 20, 13, 5, 1, 4, 12


# -- what a shop does ------------------------------------------------------------------------
def lan(w: World, **extra) -> dict:
    return w.create_customer(first_name="Lan", last_name="Nguyễn", email="lan.nguyen@example.com",
                             phone="0909123456", note="MST: 0312345678", addresses=[ADDRESS], **extra)


def lan_again(w: World) -> dict:
    """Another customer of the shop."""
    return w.create_customer(first_name="Hoa", last_name="Phạm", email="hoa.pham@example.com",
                             phone="0903555111", addresses=[ADDRESS])


def line(sku: str, quantity: int = 1, promotion: int = 0) -> dict:
    name, _unit, price = ITEMS[sku]
    body = {"sku": sku, "title": name, "price": price, "quantity": quantity}
    if promotion:
        body["total_discount"] = promotion        # per unit: Haravan's price is net of it
    return body


def web_order(w: World, customer: dict | None, gateway: str = "Bank transfer", **extra) -> dict:
    """Two lines (one with a line promotion), a discount code and a shipping fee."""
    body = {"gateway": gateway, "note": "Giao giờ hành chính", "shipping_address": ADDRESS,
            "line_items": [line("AO-THUN-M", 2, promotion=25000), line("QUAN-JEAN-32")],
            "discount_codes": [{"code": "GIAM50K", "amount": 50000}],
            "shipping_lines": [{"title": "Giao hàng nhanh", "price": 30000}]}
    if customer is not None:
        body["customer"] = {"id": customer["id"]}
    body.update(extra)
    return w.create_order(**body)


# -- checks ----------------------------------------------------------------------------------
def assert_rerun_changes_nothing(w: World) -> None:
    """Running every flow again writes nothing: same requests (payloads, statuses) and
    the same account objects as before."""
    before = w.snapshot()
    w.sync()
    assert w.snapshot() == before


def assert_balanced(payload: dict) -> None:
    """MISA's balance rules, and whole đồng everywhere."""
    detail = payload["detail"]
    assert detail
    money = [payload[k] for k in ("total_sale_amount", "total_discount_amount", "total_vat_amount",
                                  "total_amount")]
    money += [d[k] for d in detail for k in ("amount", "discount_amount", "vat_amount")]
    for amount in money:
        assert Decimal(str(amount)) == Decimal(str(amount)).to_integral_value(), payload
        assert Decimal(str(amount)) >= 0, payload
    assert Decimal(str(payload["total_sale_amount"])) == sum(Decimal(str(d["amount"])) for d in detail)
    assert Decimal(str(payload["total_discount_amount"])) == sum(Decimal(str(d["discount_amount"])) for d in detail)
    assert Decimal(str(payload["total_vat_amount"])) == sum(Decimal(str(d["vat_amount"])) for d in detail)
    assert Decimal(str(payload["total_amount"])) == (
        Decimal(str(payload["total_sale_amount"])) - Decimal(str(payload["total_discount_amount"]))
        + Decimal(str(payload["total_vat_amount"])))


def vn_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(VN)


def assert_same_instant(misa_stamp: str, haravan_stamp: str) -> None:
    got = datetime.fromisoformat(misa_stamp)
    assert got.utcoffset() == timedelta(hours=7), misa_stamp
    assert abs(got - vn_time(haravan_stamp)) < timedelta(seconds=1), (misa_stamp, haravan_stamp)


def codes(reqs: dict[str, dict]) -> set[str]:
    return set(reqs)


# ============================================================================ customers
def test_R_CUS_1_R_CUS_2_new_haravan_customer_becomes_a_misa_customer(world):
    customer = lan(world)
    world.sync("customers")

    accounts = world.account_objects()
    code = f"HRV-{customer['id']}"
    assert set(accounts) == {code}
    entry = accounts[code]
    assert entry["account_object_name"] == "Nguyễn Lan"
    assert entry["address"] == ADDRESS_TEXT
    assert entry["tel"] == "0909123456"
    assert entry["email_address"] == "lan.nguyen@example.com"
    assert entry["description"] == "MST: 0312345678"
    assert entry["is_customer"] is True and entry["is_vendor"] is False and entry["is_employee"] is False
    assert entry["receive_account"] == "131"
    assert world.request_list() == []          # customers are master data, not voucher requests

    # A customer created later is picked up by the next run; the first one is left alone.
    before = world.account_objects()[code]
    second = world.create_customer(first_name="Bình", last_name="Trần", phone="0912000111")
    world.sync("customers")
    accounts = world.account_objects()
    assert set(accounts) == {code, f"HRV-{second['id']}"}
    assert accounts[f"HRV-{second['id']}"]["account_object_name"] == "Trần Bình"
    assert accounts[f"HRV-{second['id']}"]["tel"] == "0912000111"
    assert accounts[code] == before
    assert_rerun_changes_nothing(world)


def test_R_CUS_1_guest_placeholder_is_not_created_as_a_customer(world):
    world.create_customer(first_name="Guest", email="guest@haravan.com")
    real = world.create_customer(first_name="Minh", last_name="Lê", email="minh@example.com")
    world.sync("customers")
    assert set(world.account_objects()) == {f"HRV-{real['id']}"}
    assert_rerun_changes_nothing(world)


def test_R_CUS_2_a_changed_haravan_customer_updates_the_same_misa_customer(world):
    customer = lan(world)
    world.sync("customers")
    code = f"HRV-{customer['id']}"
    answer = world.http.put(f"{world.haravan_url}/com/customers/{customer['id']}.json", headers=world.auth,
                            json={"customer": {"phone": "0988777666", "last_name": "Nguyễn Thị"}})
    assert answer.status_code == 200, answer.text
    world.sync("customers")
    accounts = world.account_objects()
    assert list(accounts) == [code]
    assert accounts[code]["tel"] == "0988777666"
    assert accounts[code]["account_object_name"] == "Nguyễn Thị Lan"
    assert accounts[code]["email_address"] == "lan.nguyen@example.com"
    assert_rerun_changes_nothing(world)


# Both flows send the one customer of shared/customer.yaml: a group field there is refused in
# each, the error naming the flow's route and then the shared file.
@pytest.mark.parametrize("flow", ["customers", "orders"])
def test_R_CUS_3_validate_refuses_a_customer_group_mapping(world, flow):
    folder = world.copy_mappings()
    shared = folder / "shared" / "customer.yaml"
    anchor = "      inactive: false\n"
    text = shared.read_text(encoding="utf-8")
    assert anchor in text
    shared.write_text(text.replace(anchor, anchor + '      account_object_group_code_list: "KH_ONLINE"\n', 1),
                      encoding="utf-8")
    path = folder / f"{flow}.yaml"

    result = world.cli("validate", str(path))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "account_object_group_code_list" in out
    assert f"{flow}.yaml:" in out and "shared/customer.yaml:" in out   # file:line, via
    assert "no API" in out and "group" in out                          # why
    assert "by hand in AMIS" in out                                  # what to do instead


def test_R_CUS_3_packaged_flows_validate(world):
    result = world.cli("validate", str(world.mappings / "customers.yaml"), str(world.mappings / "orders.yaml"))
    assert result.exit_code == 0, result.output


def test_R_CUS_4_an_orders_customer_is_created_with_the_order_and_never_twice(world):
    customer = lan(world)
    first = web_order(world, customer)
    second = web_order(world, customer, gateway="Tiền mặt")
    # Only the orders flow runs: the customers flow has never seen this customer.
    world.run("orders")
    reqs = world.wait_settled()
    code = f"HRV-{customer['id']}"
    accounts = world.account_objects()
    assert list(accounts) == [code]
    assert accounts[code]["account_object_name"] == "Nguyễn Lan"
    assert accounts[code]["tel"] == "0909123456"
    assert accounts[code]["email_address"] == "lan.nguyen@example.com"
    # The customer travelled with (or before) the first voucher, never after it.
    calls = world.http.get(f"{world.misa_url}/_sandbox/calls").json()["calls"]
    writes = [c for c in calls if c["function"] in ("save", "save_dictionary")]
    first_voucher = next(i for i, c in enumerate(writes) if c.get("vouchers"))
    assert sum(c.get("dictionary", 0) for c in writes[:first_voucher + 1]) == 1, writes
    assert sum(c.get("dictionary", 0) for c in writes) == 1, writes
    # MISA accepted both sales orders: it knew the customer when it checked them.
    for order in (first, second):
        request = reqs[f"DH_{order['id']}"]
        assert request["status"] == "accepted", request["errors"]
        assert request["payload"]["account_object_code"] == code
    # The customers flow then finds the customer already there: still one account object.
    world.sync()
    assert [a["account_object_code"] for a in world.dictionary()["account_objects"]] == [code]
    assert_rerun_changes_nothing(world)


def test_ensuring_a_customer_never_changes_one_misa_already_holds(world):
    """§5b: ensuring a customer creates it when missing and never changes an existing one. The
    company keeps the customer under its own name and address (the accountant typed them from
    the tax invoice); orders of that customer leave it as it is, before and after the ledger
    knows it."""
    customer = lan(world)
    code = f"HRV-{customer['id']}"
    own = {"dictionary_type": 1, "account_object_code": code,
           "account_object_name": "Công ty TNHH Lan Anh", "address": "1 Nguyễn Huệ, Quận 1, TP HCM",
           "tel": "0281234567", "email_address": "ketoan@lananh.vn", "is_customer": True,
           "receive_account": "131"}
    answer = world.http.post(f"{world.misa_url}/_sandbox/dictionary", json={"dictionary": [own]})
    assert answer.status_code == 200, answer.text
    before = world.account_objects()[code]

    first = web_order(world, customer)
    world.run("orders")                  # the ledger has never seen the customer: MISA is asked
    reqs = world.wait_settled()
    assert world.account_objects() == {code: before}
    assert reqs[f"DH_{first['id']}"]["status"] == "accepted", reqs[f"DH_{first['id']}"]["errors"]
    calls = world.http.get(f"{world.misa_url}/_sandbox/calls").json()["calls"]
    assert not [c for c in calls if c["function"] == "save_dictionary"], calls

    # The customer changes in Haravan and orders again; the order is paid and ships: the
    # orders flow still leaves MISA's customer alone.
    answer = world.http.put(f"{world.haravan_url}/com/customers/{customer['id']}.json",
                            headers=world.auth, json={"customer": {"phone": "0988777666"}})
    assert answer.status_code == 200, answer.text
    second = web_order(world, customer, gateway="Tiền mặt")
    world.pay(second["id"])
    world.fulfill(second["id"])
    world.run("orders")
    reqs = world.wait_settled()
    assert world.account_objects() == {code: before}
    assert reqs[f"BH_{second['id']}"]["payload"]["account_object_code"] == code
    calls = world.http.get(f"{world.misa_url}/_sandbox/calls").json()["calls"]
    assert not [c for c in calls if c["function"] == "save_dictionary"], calls


def test_names_in_another_unicode_form_or_with_stray_spaces_are_one_customer(world):
    # A phone keyboard sends "Nguyễn" decomposed (NFD), with spaces around the first name; the
    # shop later saves the customer again in the composed form (NFC). Names are read trimmed,
    # in NFC, inner spaces collapsed (docs/codes-and-names.md): one MISA customer, written once.
    decomposed = unicodedata.normalize("NFD", "Nguyễn")
    assert decomposed != "Nguyễn"
    customer = world.create_customer(first_name="  Lan ", last_name=decomposed,
                                      email="lan.nguyen@example.com", addresses=[ADDRESS])
    order = web_order(world, customer)
    world.sync()
    code = f"HRV-{customer['id']}"
    accounts = world.account_objects()
    assert list(accounts) == [code]
    assert accounts[code]["account_object_name"] == "Nguyễn Lan"        # NFC, one space
    voucher = world.requests()[f"DH_{order['id']}"]["payload"]
    assert voucher["account_object_name"] == "Nguyễn Lan"

    answer = world.http.put(f"{world.haravan_url}/com/customers/{customer['id']}.json",
                            headers=world.auth,
                            json={"customer": {"first_name": "Lan", "last_name": "Nguyễn"}})
    assert answer.status_code == 200, answer.text
    world.sync()
    assert list(world.account_objects()) == [code]
    calls = world.http.get(f"{world.misa_url}/_sandbox/calls").json()["calls"]
    assert sum(c.get("dictionary", 0) for c in calls) == 1, calls
    assert_rerun_changes_nothing(world)


def test_R_CUS_4_pos_order_without_customer_and_guest_order_go_to_the_walk_in_customer(world):
    pos = world.create_order(gateway="Tiền mặt", source_name="pos", line_items=[line("MU-LUOI-TRAI")])
    guest = world.create_order(gateway="Bank transfer",
                               customer={"first_name": "Guest", "email": "guest@haravan.com"},
                               line_items=[line("VO-COTTON-Den", 3)])
    world.pay(pos["id"], "Tiền mặt")
    world.fulfill(pos["id"])
    world.sync()

    reqs = world.wait_settled()
    accounts = world.account_objects()
    assert list(accounts) == ["KHACHLE"]
    assert accounts["KHACHLE"]["account_object_name"] == "Khách lẻ"
    assert reqs[f"BH_{pos['id']}"]["payload"]["account_object_code"] == "KHACHLE"
    assert reqs[f"BH_{pos['id']}"]["status"] == "accepted", reqs[f"BH_{pos['id']}"]["errors"]
    assert reqs[f"DH_{guest['id']}"]["payload"]["account_object_code"] == "KHACHLE"
    assert reqs[f"DH_{guest['id']}"]["status"] == "accepted", reqs[f"DH_{guest['id']}"]["errors"]
    assert_rerun_changes_nothing(world)


# ============================================================================ orders
def test_R_ORD_1_R_ORD_2_R_ORD_3_unfulfilled_order_becomes_a_sales_order(world):
    add_staff_for_api_orders(world)
    customer = lan(world)
    order = web_order(world, customer)
    world.sync()

    reqs = world.wait_settled()
    assert codes(reqs) == {f"DH_{order['id']}"}
    request = reqs[f"DH_{order['id']}"]
    assert request["status"] == "accepted", request["errors"]
    assert (request["voucher_type"], request["reftype"]) == (SALES_ORDER, 3520)
    assert request["org_refno"] == str(order["id"])
    p = request["payload"]
    assert p["account_object_code"] == f"HRV-{customer['id']}"
    assert p["account_object_name"] == "Nguyễn Lan"
    assert p["shipping_address"] == ADDRESS_TEXT
    assert p["journal_memo"] == f"Đơn hàng Haravan {order['name']} - Giao giờ hành chính"
    assert_same_instant(p["refdate"], order["created_at"])
    assert p["employee_code"] == "NV00009"                 # staff.csv: Haravan user 0 → NV00009
    goods = [(d["inventory_item_code"], d["inventory_item_name"], d["quantity"], d["stock_code"])
             for d in p["detail"]]
    assert goods == [("AO-THUN-M", "Áo thun cotton", 2, "KHO_HCM"),
                     ("QUAN-JEAN-32", "Quần jean slim", 1, "KHO_HCM"),
                     ("DV_VANCHUYEN", "Giao hàng nhanh", 1, None)]
    assert Decimal(str(p["total_amount"])) == Decimal(str(order["total_price"]))
    assert_rerun_changes_nothing(world)


@pytest.mark.parametrize("gateway,paid,reftype", [
    ("Tiền mặt", True, 3531), ("Bank transfer", True, 3537), ("COD", False, 3530)],
    ids=["cash", "bank", "cod_unpaid"])
def test_R_ORD_4_fulfilled_order_becomes_a_sales_voucher_with_stock_issue(world, gateway, paid, reftype):
    customer = lan(world)
    order = web_order(world, customer, gateway=gateway)
    if paid:
        world.pay(order["id"], gateway)
    world.fulfill(order["id"])
    world.sync()

    reqs = world.wait_settled()
    assert codes(reqs) == {f"BH_{order['id']}"}       # first seen delivered: no DH_, no PT_
    request = reqs[f"BH_{order['id']}"]
    assert request["status"] == "accepted", request["errors"]
    assert (request["voucher_type"], request["reftype"]) == (SALES_VOUCHER, reftype)
    assert request["org_refno"] == str(order["id"])
    p = request["payload"]
    assert p["is_sale_with_outward"] is True
    assert p["is_paid"] is paid
    outward = p["in_outward"]
    assert outward["journal_memo"] and outward["account_object_code"] == f"HRV-{customer['id']}"
    assert "employee_code" in outward
    fulfilled = world.order(order["id"])["fulfillments"][0]["created_at"]
    for stamp in (p["refdate"], p["posted_date"], outward["refdate"], outward["posted_date"]):
        assert_same_instant(stamp, fulfilled)
    assert [d["stock_code"] for d in p["detail"]] == ["KHO_HCM", "KHO_HCM", None]
    money_account = {3531: "1111", 3537: "1121", 3530: "131"}[reftype]
    assert {d["debit_account"] for d in p["detail"]} == {money_account}
    assert Decimal(str(p["total_amount"])) == Decimal(str(order["total_price"]))
    assert_rerun_changes_nothing(world)


def test_R_ORD_4_goods_leave_the_warehouse_that_fulfilled_them(world):
    hanoi = world.create_order(gateway="Tiền mặt", customer={"id": lan(world)["id"]}, location_id=963415,
                               line_items=[line("MU-LUOI-TRAI", 2)])
    danang = world.create_order(gateway="Tiền mặt", line_items=[line("VO-COTTON-Den")])
    world.sync()
    world.pay(hanoi["id"])
    world.fulfill(hanoi["id"])
    world.pay(danang["id"])
    world.fulfill(danang["id"], location_id=963416)
    world.sync("orders")
    reqs = world.wait_settled()
    assert [d["stock_code"] for d in reqs[f"DH_{hanoi['id']}"]["payload"]["detail"]] == ["KHO_HN"]
    assert [d["stock_code"] for d in reqs[f"BH_{hanoi['id']}"]["payload"]["detail"]] == ["KHO_HN"]
    assert [d["stock_code"] for d in reqs[f"DH_{danang['id']}"]["payload"]["detail"]] == ["KHO_HCM"]
    assert [d["stock_code"] for d in reqs[f"BH_{danang['id']}"]["payload"]["detail"]] == ["KHO_DN"]
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    assert_rerun_changes_nothing(world)


def test_R_ORD_5_discounts_and_shipping_match_haravan_to_the_dong(world):
    customer = lan(world)
    order = web_order(world, customer)
    assert Decimal(str(order["total_price"])) == Decimal(880000)     # 2×225k + 450k − 50k + 30k
    world.sync()
    world.pay(order["id"], "Bank transfer")
    world.fulfill(order["id"])
    world.sync("orders")

    reqs = world.wait_settled()
    for code in (f"DH_{order['id']}", f"BH_{order['id']}"):
        request = reqs[code]
        assert request["status"] == "accepted", request["errors"]
        p = request["payload"]
        assert_balanced(p)
        assert Decimal(str(p["total_amount"])) == Decimal(str(order["total_price"]))
        shirt, jeans, shipping = p["detail"]
        # Shipping is its own line, with the service item, and carries no discount.
        assert shipping["inventory_item_code"] == "DV_VANCHUYEN"
        assert shipping["discount_amount"] == 0
        assert Decimal(str(shipping["amount"])) + Decimal(str(shipping["vat_amount"])) == 30000
        # Every goods line carries a discount; the promoted line a larger share (its own 50k
        # promotion plus its pro-rata part of the 50k code), the lines together all 100k.
        assert shirt["discount_amount"] > jeans["discount_amount"] > 0
        gross_discounts = sum(Decimal(str(d["discount_amount"])) * Decimal("1.08") for d in (shirt, jeans))
        assert abs(gross_discounts - 100000) <= 2
        for d in (shirt, jeans):
            assert d["discount_rate"] == pytest.approx(
                float(Decimal(str(d["discount_amount"])) / Decimal(str(d["amount"])) * 100), abs=0.01)
    # Paid and delivered between two runs: no separate receipt, the sales voucher holds it.
    assert codes(reqs) == {f"DH_{order['id']}", f"BH_{order['id']}"}
    assert reqs[f"BH_{order['id']}"]["reftype"] == 3537
    assert_rerun_changes_nothing(world)


def test_R_ORD_5_awkward_amounts_still_balance_to_the_dong(world):
    """Prices, promotions, a discount code and shipping that leave rounding remainders at
    every step (pro-rata split, VAT split), on orders seen unfulfilled and then delivered."""
    shapes = [
        ([("AO-THUN-M", 33333, 3, 1111), ("QUAN-JEAN-32", 12345, 7, 0), ("MU-LUOI-TRAI", 99999, 1, 0)],
         10001, 15001),
        ([("VO-COTTON-Den", 1, 1, 0), ("MU-LUOI-TRAI", 149999, 2, 33333)], 7, 0),
        ([("AO-THUN-M", 250000, 1, 0), ("QUAN-JEAN-32", 250000, 1, 0)], 1, 22222),
    ]
    orders = []
    for lines, code, ship in shapes:
        body = {"gateway": "Tiền mặt",
                "line_items": [{"sku": sku, "title": ITEMS[sku][0], "price": price, "quantity": qty,
                                "total_discount": promo} for sku, price, qty, promo in lines]}
        if code:
            body["discount_codes"] = [{"code": "KM", "amount": code}]
        if ship:
            body["shipping_lines"] = [{"title": "Giao hàng", "price": ship}]
        orders.append(world.create_order(**body))
    world.sync()
    for order in orders:
        world.pay(order["id"])
        world.fulfill(order["id"])
    world.sync("orders")
    reqs = world.wait_settled()
    for order in orders:
        for code in (f"DH_{order['id']}", f"BH_{order['id']}"):
            request = reqs[code]
            assert request["status"] == "accepted", (code, request["errors"])
            assert Decimal(str(request["payload"]["total_amount"])) == Decimal(str(order["total_price"])), code
            assert_balanced(request["payload"])
    assert_rerun_changes_nothing(world)


def test_R_ORD_5_the_vat_rate_is_a_setting_and_the_total_still_matches(world):
    folder = world.copy_mappings()
    settings = yaml.safe_load((folder / "settings.yaml").read_text(encoding="utf-8"))
    settings["orders"]["vat"] = {"rate": 10, "mode": "prices_include_vat"}
    (folder / "settings.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    order = web_order(world, lan(world))
    world.sync()
    request = world.wait_settled()[f"DH_{order['id']}"]
    assert request["status"] == "accepted", request["errors"]
    p = request["payload"]
    assert_balanced(p)
    assert {d["vat_rate"] for d in p["detail"]} == {10}
    assert Decimal(str(p["total_amount"])) == Decimal(str(order["total_price"]))
    # VAT is the inclusive share: 10/110 of what the customer pays, to within rounding per line.
    assert abs(Decimal(str(p["total_vat_amount"])) - Decimal(str(order["total_price"])) * 10 / 110) <= len(p["detail"])
    assert_rerun_changes_nothing(world)


def test_R_ORD_5_line_promotion_only_and_no_shipping(world):
    order = world.create_order(gateway="Tiền mặt", customer={"id": lan(world)["id"]},
                               line_items=[line("VO-COTTON-Den", 3, promotion=1000),
                                           line("MU-LUOI-TRAI", 1)])
    world.pay(order["id"])
    world.fulfill(order["id"])
    world.sync()
    request = world.wait_settled()[f"BH_{order['id']}"]
    assert request["status"] == "accepted", request["errors"]
    p = request["payload"]
    assert_balanced(p)
    assert Decimal(str(p["total_amount"])) == Decimal(str(order["total_price"])) == Decimal(3 * 34000 + 150000)
    assert [d["inventory_item_code"] for d in p["detail"]] == ["VO-COTTON-Den", "MU-LUOI-TRAI"]
    assert p["detail"][1]["discount_amount"] == 0
    assert_rerun_changes_nothing(world)


def test_R_ORD_6_unfulfilled_then_paid_then_fulfilled_yields_each_document_once_in_order(world):
    customer = lan(world)
    order = web_order(world, customer)
    oid = order["id"]

    world.sync()
    assert [r["refno_finance"] for r in world.request_list()] == [f"DH_{oid}"]
    assert_rerun_changes_nothing(world)

    world.pay(oid, "Bank transfer")
    world.sync("orders")
    reqs = world.wait_settled()
    assert [r["refno_finance"] for r in world.request_list()] == [f"DH_{oid}", f"PT_{oid}"]
    receipt = reqs[f"PT_{oid}"]
    assert (receipt["voucher_type"], receipt["reftype"]) == (BANK_RECEIPT, 1500)
    assert receipt["status"] == "accepted", receipt["errors"]
    assert Decimal(str(receipt["payload"]["total_amount"])) == Decimal(str(order["total_price"]))
    paid_at = [t for t in world.order(oid)["transactions"] if t["kind"].lower() == "capture"][0]["created_at"]
    assert_same_instant(receipt["payload"]["refdate"], paid_at)           # receipt date
    assert_same_instant(receipt["payload"]["posted_date"], paid_at)       # posting date
    assert receipt["payload"]["reason_type_id"] == 14                     # reason: customer payment
    assert order["name"] in receipt["payload"]["journal_memo"]
    assert "employee_code" in receipt["payload"]                          # sales staff
    assert receipt["payload"]["account_object_code"] == f"HRV-{customer['id']}"
    assert receipt["payload"]["detail"][0]["debit_account"] == "1121"
    assert_rerun_changes_nothing(world)

    world.fulfill(oid)
    world.sync("orders")
    reqs = world.wait_settled()
    assert [r["refno_finance"] for r in world.request_list()] == [f"DH_{oid}", f"PT_{oid}", f"BH_{oid}"]
    voucher = reqs[f"BH_{oid}"]
    assert (voucher["voucher_type"], voucher["reftype"]) == (SALES_VOUCHER, 3530)   # PT_ holds the money
    # The voucher refers to the sales order it fulfils (MISA's "Tham chiếu").
    sales_order = reqs[f"DH_{oid}"]
    assert voucher["references"] == [{
        "org_refid": voucher["org_refid"], "org_refno": str(oid), "org_reftype": 3530,
        "org_refer_refid": sales_order["org_refid"], "org_refer_refno": f"DH_{oid}", "org_refer_reftype": 3520}]
    assert "reference" not in voucher["payload"]
    assert reqs[f"PT_{oid}"]["references"] == []
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    # The sales order is left as it was (MISA closes it when the voucher is generated).
    assert reqs[f"DH_{oid}"]["payload"]["total_amount"] == 880000
    assert_rerun_changes_nothing(world)


def test_R_ORD_6_cod_delivered_unpaid_then_collected_gets_a_receipt_afterwards(world):
    order = web_order(world, lan(world), gateway="COD", gateway_code="COD")
    oid = order["id"]
    world.fulfill(oid)
    world.sync()
    assert [(r["refno_finance"], r["reftype"]) for r in world.request_list()] == [(f"BH_{oid}", 3530)]
    world.pay(oid)
    world.sync("orders")
    reqs = world.wait_settled()
    assert [r["refno_finance"] for r in world.request_list()] == [f"BH_{oid}", f"PT_{oid}"]
    # COD money is owed by the carrier until remitted: a receipt into the COD clearing account.
    assert (reqs[f"PT_{oid}"]["voucher_type"], reqs[f"PT_{oid}"]["reftype"]) == (CASH_RECEIPT, 1010)
    assert reqs[f"PT_{oid}"]["payload"]["detail"][0]["debit_account"] == "1388"
    assert reqs[f"BH_{oid}"]["reftype"] == 3530
    assert_rerun_changes_nothing(world)


# ============================================================================ cancellations
def test_R_CAN_1_R_CAN_2_paid_order_cancelled_before_delivery_gets_PC_and_its_sales_order_withdrawn(world):
    customer = lan(world)
    order = web_order(world, customer, gateway="Tiền mặt")
    oid = order["id"]
    world.sync()
    world.pay(oid, "Tiền mặt")
    world.sync("orders")
    reqs = world.wait_settled()
    assert (reqs[f"PT_{oid}"]["voucher_type"], reqs[f"PT_{oid}"]["reftype"]) == (CASH_RECEIPT, 1010)

    cancelled = world.cancel(oid, reason="customer", amount=order["total_price"], note="Khách đổi ý")
    # The shop keeps a fee on a second order: the payment is for what was refunded.
    fee_kept = web_order(world, lan_again(world), gateway="Bank transfer")
    world.pay(fee_kept["id"])
    world.sync("orders")
    world.cancel(fee_kept["id"], reason="customer", amount=800000)
    world.sync()
    reqs = world.wait_settled()
    fid = fee_kept["id"]
    assert reqs[f"DH_{fid}"]["status"] == "deleted"
    assert Decimal(str(reqs[f"PC_{fid}"]["payload"]["total_amount"])) == Decimal(800000)
    assert reqs[f"PC_{fid}"]["payload"]["detail"][0]["credit_account"] == "1121"
    # The shop kept 80,000 of the 880,000 paid: a fee on the customer's account, other income.
    fee = reqs[f"PHI_{fid}_HUY"]["payload"]
    assert Decimal(str(fee["total_amount"])) == Decimal(80000)
    assert (fee["detail"][0]["debit_account"], fee["detail"][0]["credit_account"]) == ("131", "711")
    reqs = {c: r for c, r in reqs.items() if str(fid) not in c}
    assert codes(reqs) == {f"DH_{oid}", f"PT_{oid}", f"PC_{oid}"}
    assert reqs[f"DH_{oid}"]["status"] == "deleted"
    assert reqs[f"PT_{oid}"]["status"] == "accepted"
    payment = reqs[f"PC_{oid}"]
    assert payment["status"] == "accepted", payment["errors"]
    assert (payment["voucher_type"], payment["reftype"]) == (CASH_PAYMENT, 1020)
    assert payment["org_refno"] == str(oid)
    p = payment["payload"]
    assert Decimal(str(p["total_amount"])) == Decimal(str(order["total_price"]))
    assert sum(Decimal(str(d["amount"])) for d in p["detail"]) == Decimal(str(order["total_price"]))
    assert p["detail"][0]["credit_account"] == "1111"
    refund = cancelled["refunds"][0]
    assert_same_instant(p["refdate"], refund["transactions"][0]["created_at"])   # the money's date
    assert "Khách đổi ý" in p["journal_memo"]                           # the reason
    assert_rerun_changes_nothing(world)


@pytest.mark.parametrize("paid", [True, False], ids=["paid", "unpaid"])
def test_R_CAN_2_order_cancelled_before_delivery_with_restock_withdraws_its_sales_order(world, paid):
    order = web_order(world, lan(world), gateway="Tiền mặt")
    oid = order["id"]
    world.sync()
    if paid:
        world.pay(oid)
        world.sync("orders")
    cancelled = world.cancel(oid, reason="customer", restock=True,
                             **({"amount": order["total_price"]} if paid else {}))
    assert cancelled["fulfillments"] == []                   # nothing ever left the warehouse
    world.sync("orders")
    reqs = world.wait_settled()
    assert reqs[f"DH_{oid}"]["status"] == "deleted"
    assert codes(reqs) == ({f"DH_{oid}", f"PT_{oid}", f"PC_{oid}"} if paid else {f"DH_{oid}"})
    assert not any(c.startswith("BTL_") for c in reqs)
    assert_rerun_changes_nothing(world)


def test_R_CAN_1_unpaid_order_cancelled_before_delivery_withdraws_its_sales_order(world):
    order = web_order(world, lan(world), gateway="COD")
    oid = order["id"]
    world.sync()
    world.cancel(oid, reason="customer")
    world.sync("orders")
    reqs = world.wait_settled()
    assert codes(reqs) == {f"DH_{oid}"}
    assert reqs[f"DH_{oid}"]["status"] == "deleted"
    assert_rerun_changes_nothing(world)


def test_R_CAN_1_order_cancelled_before_any_sync_writes_nothing(world):
    order = web_order(world, lan(world), gateway="Tiền mặt")
    world.pay(order["id"])
    world.cancel(order["id"], amount=order["total_price"])
    world.sync()
    assert world.request_list() == []
    assert_rerun_changes_nothing(world)


def test_R_CAN_3_cod_refused_after_delivery_becomes_a_BTL_sales_return(world):
    customer = lan(world)
    order = web_order(world, customer, gateway="COD", gateway_code="COD")
    oid = order["id"]
    world.fulfill(oid)
    world.sync()
    sale = world.wait_settled()[f"BH_{oid}"]
    assert sale["reftype"] == 3530

    world.cancel(oid, reason="declined", restock=True, note="Khách từ chối nhận hàng")
    world.sync("orders")
    reqs = world.wait_settled()
    # The cancellation's refund brings the goods back (BTL_); the cancellation itself returns the
    # shipping fee still booked (BTL_<id>_2). No money moved: no PC_.
    assert codes(reqs) == {f"BH_{oid}", f"BTL_{oid}", f"BTL_{oid}_2"}
    shipping = reqs[f"BTL_{oid}_2"]["payload"]
    assert [d["inventory_item_code"] for d in shipping["detail"]] == ["DV_VANCHUYEN"]
    ret = reqs[f"BTL_{oid}"]
    assert ret["status"] == "accepted", ret["errors"]
    assert (ret["voucher_type"], ret["reftype"]) == (SALES_RETURN, 3540)
    assert ret["org_refno"] == str(oid)
    # Each return refers to the sale it reverses.
    assert [(r["org_refer_refid"], r["org_refer_refno"], r["org_refer_reftype"]) for r in ret["references"]] == [
        (sale["org_refid"], f"BH_{oid}", 3530)]
    p = ret["payload"]
    assert p["is_return_with_inward"] is True
    assert_balanced(p)
    assert p["total_amount"] + shipping["total_amount"] == sale["payload"]["total_amount"]
    assert [(d["inventory_item_code"], d["quantity"]) for d in p["detail"] + shipping["detail"]] == [
        (d["inventory_item_code"], d["quantity"]) for d in sale["payload"]["detail"]]
    assert {d["credit_account"] for d in p["detail"]} == {"131"}       # receivable reduced
    assert reqs[f"BH_{oid}"]["status"] == "accepted"
    assert_rerun_changes_nothing(world)


def test_R_CAN_4_paid_delivered_order_cancelled_with_restock_gets_BTL_and_PC(world):
    order = web_order(world, lan(world), gateway="Tiền mặt")
    oid = order["id"]
    world.pay(oid, "Tiền mặt")
    world.fulfill(oid)
    world.sync()
    assert world.wait_settled()[f"BH_{oid}"]["reftype"] == 3531

    world.cancel(oid, reason="customer", restock=True, amount=order["total_price"])
    world.sync("orders")
    reqs = world.wait_settled()
    assert codes(reqs) == {f"BH_{oid}", f"BTL_{oid}", f"PC_{oid}"}
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    assert Decimal(str(reqs[f"PC_{oid}"]["payload"]["total_amount"])) == Decimal(str(order["total_price"]))
    assert reqs[f"PC_{oid}"]["payload"]["detail"][0]["credit_account"] == "1111"
    assert Decimal(str(reqs[f"BTL_{oid}"]["payload"]["total_amount"])) == Decimal(str(order["total_price"]))
    assert_rerun_changes_nothing(world)


def test_R_CAN_4_paid_delivered_order_partly_refunded_with_restock_gets_BTL_for_the_line_and_PC(world):
    order = web_order(world, lan(world), gateway="Bank transfer")
    oid = order["id"]
    world.pay(oid, "Bank transfer")
    world.fulfill(oid)
    world.sync()
    sale = world.wait_settled()[f"BH_{oid}"]
    assert sale["reftype"] == 3537
    jeans_line = next(li for li in order["line_items"] if li["sku"] == "QUAN-JEAN-32")
    world.refund(oid, restock=True, note="Đổi size", refund_line_items=[
        {"line_item_id": jeans_line["id"], "quantity": 1}], transactions=[{"amount": 400000}])
    world.sync("orders")
    reqs = world.wait_settled()
    # The jeans' share of the sale is worth more than the 400,000 refunded: the shop keeps the
    # difference as a fee, so the customer's account clears (§5b).
    assert codes(reqs) == {f"BH_{oid}", f"BTL_{oid}", f"PC_{oid}", f"PHI_{oid}"}
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    fee = Decimal(str(reqs[f"PHI_{oid}"]["payload"]["total_amount"]))
    assert fee == Decimal(str(reqs[f"BTL_{oid}"]["payload"]["total_amount"])) - 400000 > 0
    payment = reqs[f"PC_{oid}"]["payload"]
    assert Decimal(str(payment["total_amount"])) == Decimal(400000)
    assert payment["detail"][0]["credit_account"] == "1121"
    ret = reqs[f"BTL_{oid}"]["payload"]
    assert_balanced(ret)
    sold = next(d for d in sale["payload"]["detail"] if d["inventory_item_code"] == "QUAN-JEAN-32")
    assert [(d["inventory_item_code"], d["quantity"], d["amount"], d["discount_amount"], d["vat_amount"])
            for d in ret["detail"]] == [("QUAN-JEAN-32", 1, sold["amount"], sold["discount_amount"],
                                         sold["vat_amount"])]

    # A second partial refund gets its own suffixed codes.
    shirt_line = next(li for li in order["line_items"] if li["sku"] == "AO-THUN-M")
    world.refund(oid, restock=True, refund_line_items=[{"line_item_id": shirt_line["id"], "quantity": 1}],
                 transactions=[{"amount": 200000}])
    world.sync("orders")
    reqs = world.wait_settled()
    assert {f"BH_{oid}", f"BTL_{oid}", f"PC_{oid}", f"BTL_{oid}_2", f"PC_{oid}_2"} <= codes(reqs)
    assert Decimal(str(reqs[f"PC_{oid}_2"]["payload"]["total_amount"])) == Decimal(200000)
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    assert_rerun_changes_nothing(world)


def test_R_CAN_4_cancelling_after_a_partial_return_returns_the_remaining_goods_once(world):
    order = web_order(world, lan(world), gateway="Tiền mặt")
    oid = order["id"]
    world.pay(oid)
    world.fulfill(oid)
    world.sync()
    jeans_line = next(li for li in order["line_items"] if li["sku"] == "QUAN-JEAN-32")
    world.refund(oid, restock=True, refund_line_items=[{"line_item_id": jeans_line["id"], "quantity": 1}],
                 transactions=[{"amount": 400000}])
    world.sync("orders")
    cancelled = world.cancel(oid, reason="customer", restock=True, amount=480000)
    assert cancelled["financial_status"] == "refunded"
    output = world.run("orders")
    reqs = world.wait_settled()
    assert "conflict" not in output.lower(), output
    # The first refund left a fee kept (PHI_); refunding the rest gives it back (PHI_<id>_HUY).
    assert codes(reqs) == {f"BH_{oid}", f"BTL_{oid}", f"PC_{oid}", f"BTL_{oid}_2", f"PC_{oid}_2",
                           f"BTL_{oid}_3", f"PHI_{oid}", f"PHI_{oid}_HUY"}
    fee, back = (reqs[c]["payload"] for c in (f"PHI_{oid}", f"PHI_{oid}_HUY"))
    assert fee["total_amount"] == back["total_amount"] > 0
    assert back["detail"][0]["debit_account"] == "711"
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    assert Decimal(str(reqs[f"PC_{oid}_2"]["payload"]["total_amount"])) == Decimal(480000)
    second = reqs[f"BTL_{oid}_2"]["payload"]
    # The two refunds give back every đồng (400,000 + 480,000 = total_price), so the sale is
    # reversed in full: the shirts by the second refund, the shipping fee by the cancellation.
    assert [(d["inventory_item_code"], d["quantity"]) for d in second["detail"]] == [("AO-THUN-M", 2)]
    assert [d["inventory_item_code"] for d in reqs[f"BTL_{oid}_3"]["payload"]["detail"]] == ["DV_VANCHUYEN"]
    returned = sum(Decimal(str(reqs[c]["payload"]["total_amount"]))
                   for c in (f"BTL_{oid}", f"BTL_{oid}_2", f"BTL_{oid}_3"))
    assert abs(returned - Decimal(str(order["total_price"]))) <= 1
    assert_rerun_changes_nothing(world)


def test_R_CAN_4_money_only_refund_after_delivery_gets_a_PC_and_no_return(world):
    order = web_order(world, lan(world), gateway="Tiền mặt")
    oid = order["id"]
    world.pay(oid)
    world.fulfill(oid)
    world.sync()
    world.refund(oid, transactions=[{"amount": 50000}], note="Bồi thường giao trễ")
    world.sync("orders")
    reqs = world.wait_settled()
    # Money no returned goods cover is a sales allowance (5213 + VAT against 131).
    assert codes(reqs) == {f"BH_{oid}", f"PC_{oid}", f"GG_{oid}"}
    allowance = reqs[f"GG_{oid}"]["payload"]
    assert Decimal(str(allowance["total_amount"])) == Decimal(50000)
    assert allowance["detail"][0]["debit_account"] == "5213"
    payment = reqs[f"PC_{oid}"]
    assert payment["status"] == "accepted", payment["errors"]
    assert Decimal(str(payment["payload"]["total_amount"])) == Decimal(50000)
    assert "Bồi thường giao trễ" in payment["payload"]["journal_memo"]
    assert_rerun_changes_nothing(world)


def add_staff_for_api_orders(world) -> None:
    """Orders created through the API carry Haravan user_id 0; the integrator maps that
    user to a MISA employee in staff.csv (a copied mappings folder)."""
    folder = world.copy_mappings()
    with open(folder / "staff.csv", "a", encoding="utf-8") as table:
        table.write("0,NV00009,Bán hàng online\n")


def test_R_CAN_5_payment_and_return_documents_carry_customer_dates_staff_totals_and_lines(world):
    add_staff_for_api_orders(world)
    customer = lan(world)
    order = web_order(world, customer, gateway="Tiền mặt")
    oid = order["id"]
    world.pay(oid)
    world.fulfill(oid)
    world.sync()
    cancelled = world.cancel(oid, reason="customer", restock=True, amount=order["total_price"],
                             note="Hàng lỗi")
    world.sync("orders")
    reqs = world.wait_settled()
    code = f"HRV-{customer['id']}"
    sale = reqs[f"BH_{oid}"]["payload"]

    assert world.order(oid)["user_id"] == 0
    assert sale["employee_code"] == sale["in_outward"]["employee_code"] == "NV00009"
    payment = reqs[f"PC_{oid}"]["payload"]
    assert payment["account_object_code"] == code and payment["account_object_name"] == "Nguyễn Lan"
    assert payment["employee_code"] == "NV00009"
    assert_same_instant(payment["posted_date"], cancelled["refunds"][0]["transactions"][0]["created_at"])
    assert Decimal(str(payment["total_amount"])) == Decimal(str(order["total_price"]))
    assert "Hàng lỗi" in payment["journal_memo"]
    assert payment["detail"][0]["account_object_code"] == code

    ret = reqs[f"BTL_{oid}"]["payload"]
    assert ret["account_object_code"] == code and ret["account_object_name"] == "Nguyễn Lan"
    assert ret["employee_code"] == "NV00009"
    assert_same_instant(ret["posted_date"], cancelled["cancelled_at"])
    assert ret["journal_memo"]
    assert ret["total_discount_amount"] == sale["total_discount_amount"] > 0
    assert Decimal(str(ret["total_amount"])) == Decimal(str(order["total_price"]))
    for got, sold in zip(ret["detail"], sale["detail"], strict=True):
        for field in ("inventory_item_code", "inventory_item_name", "stock_code", "quantity",
                      "discount_amount", "amount", "vat_amount"):
            assert got[field] == sold[field], field
    assert [d["stock_code"] for d in ret["detail"]] == ["KHO_HCM", "KHO_HCM", None]
    assert_rerun_changes_nothing(world)


def test_R_CAN_5_return_lines_carry_the_unit_of_the_item(world):
    """The unit comes from MISA's item dictionary, read when the run starts (lookups: items)."""
    order = world.create_order(gateway="COD", gateway_code="COD", customer={"id": lan(world)["id"]},
                               line_items=[line("VO-COTTON-Den", 2), line("MU-LUOI-TRAI")])
    world.fulfill(order["id"])
    world.sync()
    world.cancel(order["id"], reason="declined", restock=True)
    world.sync("orders")
    ret = world.wait_settled()[f"BTL_{order['id']}"]
    assert ret["status"] == "accepted", ret["errors"]
    units = {i["inventory_item_code"]: i.get("unit_name") for i in world.dictionary()["inventory_items"]}
    assert [(d["inventory_item_code"], d.get("unit_name")) for d in ret["payload"]["detail"]] == [
        ("VO-COTTON-Den", units["VO-COTTON-Den"]), ("MU-LUOI-TRAI", units["MU-LUOI-TRAI"])]
    assert units["VO-COTTON-Den"] == "Đôi"
    first = ret["payload"]["detail"][0]
    assert (first["main_unit_name"], first["main_convert_rate"], first["main_quantity"]) == ("Đôi", 1, 2)


def test_R_CAN_6_document_codes_follow_the_templates_in_settings(world):
    folder = world.copy_mappings()
    settings_path = folder / "settings.yaml"
    settings = yaml.safe_load(settings_path.read_text(encoding="utf-8"))
    settings["orders"]["codes"] = {"sales_order": "DDH-", "sales_voucher": "CTBH-", "receipt": "THU-",
                                   "payment": "CHI-", "sales_return": "TRA-", "allowance": "GIAM-",
                                   "fee": "PHI-"}
    settings_path.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")

    paid = web_order(world, lan(world), gateway="Tiền mặt")
    refused = web_order(world, None, gateway="COD", gateway_code="COD")
    world.sync()
    world.pay(paid["id"])
    world.fulfill(refused["id"])
    world.sync("orders")
    world.cancel(paid["id"], amount=paid["total_price"])
    world.cancel(refused["id"], reason="declined", restock=True)
    world.sync("orders")
    reqs = world.wait_settled()
    p, r = paid["id"], refused["id"]
    assert codes(reqs) == {f"DDH-{p}", f"THU-{p}", f"CHI-{p}", f"DDH-{r}", f"CTBH-{r}", f"TRA-{r}", f"TRA-{r}_2"}
    assert not any(code.startswith(("DH_", "BH_", "PT_", "PC_", "BTL_")) for code in reqs)
    assert reqs[f"DDH-{p}"]["status"] == "deleted" and reqs[f"DDH-{r}"]["status"] == "accepted"
    assert all(reqs[c]["status"] == "accepted" for c in (f"THU-{p}", f"CHI-{p}", f"CTBH-{r}", f"TRA-{r}")), reqs
    assert_rerun_changes_nothing(world)


def test_R_CAN_7_every_document_of_an_order_carries_its_id_in_org_refno(world):
    order = web_order(world, lan(world), gateway="Bank transfer")
    oid = order["id"]
    other = web_order(world, None, gateway="Tiền mặt")
    world.sync()                                    # DH_
    world.pay(oid)
    world.sync("orders")                            # PT_
    world.fulfill(oid)
    world.sync("orders")                            # BH_ 3530
    jeans_line = next(li for li in order["line_items"] if li["sku"] == "QUAN-JEAN-32")
    world.refund(oid, restock=True, refund_line_items=[{"line_item_id": jeans_line["id"], "quantity": 1}],
                 transactions=[{"amount": 400000}])
    world.sync("orders")                            # BTL_ + PC_ + PHI_ (the fee kept)
    reqs = world.wait_settled()
    mine = {c: r for c, r in reqs.items() if c.endswith(f"_{oid}")}
    assert set(mine) == {f"DH_{oid}", f"PT_{oid}", f"BH_{oid}", f"BTL_{oid}", f"PC_{oid}", f"PHI_{oid}"}
    for request in mine.values():
        assert request["org_refno"] == str(oid)
        assert request["payload"]["org_refno"] == str(oid)
    assert reqs[f"DH_{other['id']}"]["org_refno"] == str(other["id"])
    # Staff find every document of the order by its Haravan id, and only those.
    assert {c for c, r in reqs.items() if r["org_refno"] == str(oid)} == set(mine)
    assert_rerun_changes_nothing(world)


def _generated_then_cancelled(world) -> tuple[dict, dict, str]:
    """An unpaid order synced as a sales order that the accountant generated, then cancelled
    on Haravan. Returns (order, the DH_ request as generated, the output of the runs)."""
    order = web_order(world, lan(world), gateway="COD")
    oid = order["id"]
    world.sync()
    request = world.wait_settled()[f"DH_{oid}"]
    assert request["status"] == "accepted", request["errors"]
    generated = world.generate(request["org_refid"])        # the accountant: Lập chứng từ
    assert generated["status"] == "generated"
    world.sync("orders")
    world.cancel(oid, reason="customer")
    output = world.run("orders")
    world.wait_settled()
    output += world.run("orders")
    return order, world.requests()[f"DH_{oid}"], output


def test_R_CAN_8_withdrawing_a_generated_sales_order_leaves_it_untouched_and_records_a_conflict(world):
    order, before, _output = _generated_then_cancelled(world)
    oid = order["id"]
    requests_before = world.request_list()
    after = world.requests()[f"DH_{oid}"]
    assert after["status"] == "generated"                          # not withdrawn
    assert after["payload"] == before["payload"]
    assert [r["refno_finance"] for r in requests_before] == [f"DH_{oid}"]   # nothing else written
    # hexaflow keeps it as a conflict for the accountant to cancel by hand.
    status = world.cli("status").output
    assert "conflict" in status and f"DH_{oid}" in status, status
    # Reruns do not try again and report nothing new.
    again = world.run("orders") + world.run("customers")
    assert "conflict" not in again.lower(), again
    assert world.request_list() == requests_before
    assert_rerun_changes_nothing(world)


def test_R_CAN_8_changing_a_generated_sales_order_leaves_it_untouched(world):
    order = web_order(world, lan(world), gateway="COD")
    oid = order["id"]
    world.sync()
    request = world.wait_settled()[f"DH_{oid}"]
    world.generate(request["org_refid"])
    answer = world.http.put(f"{world.haravan_url}/com/orders/{oid}.json",
                            json={"order": {"note": "Đổi địa chỉ giao"}}, headers=world.auth)
    assert answer.status_code == 200, answer.text
    world.sync("orders")
    after = world.requests()[f"DH_{oid}"]
    assert after["status"] == "generated"
    assert after["payload"] == request["payload"]
    status = world.cli("status").output
    assert "conflict" in status and f"DH_{oid}" in status, status
    assert_rerun_changes_nothing(world)


def test_R_CAN_8_cancelling_a_generated_sales_order_is_reported_by_the_run_once(world):
    order, _request, output = _generated_then_cancelled(world)
    assert output.lower().count("conflict") >= 1, output
    reports = [l for l in output.splitlines() if "conflict" in l.lower() and ":" in l
               and ("DH_" in l or str(order["id"]) in l)]
    assert len(reports) == 1, output
    again = world.run("orders")
    assert "conflict" not in again.lower(), again


def test_R_CAN_8_each_request_is_tracked_through_its_lifecycle_per_order(world):
    order = web_order(world, lan(world), gateway="COD")
    oid = order["id"]
    world.sync()
    request = world.wait_settled()[f"DH_{oid}"]
    trace = world.cli("trace", str(oid)).output
    assert f"DH_{oid}" in trace and "accepted" in trace, trace
    world.generate(request["org_refid"])
    world.sync("orders")
    assert "generated" in world.cli("trace", str(oid)).output
    answer = world.http.post(f"{world.misa_url}/_sandbox/requests/{request['org_refid']}/post")
    assert answer.status_code == 200, answer.text
    world.sync("orders")
    trace = world.cli("trace", str(oid)).output
    dh = trace[trace.index(f"DH_{oid}"):]
    assert "state posted" in dh.splitlines()[0], trace
