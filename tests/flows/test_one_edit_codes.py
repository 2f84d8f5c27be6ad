"""Issue 13: "BTL_ codes become TL-<order name>" is one edit of orders.yaml.

The sales-return code is built once (the `return_code` let) and numbered once (`numbered()`):
the partial returns take it through `refund_returns`, the cancellation's return through
`cancel_return_code`, and whether a refund's return is already written is read from the ledger
under the same code. The test makes the one-line edit in a copy of mappings/ and runs a partial
return followed by a cancellation against the sandboxes.
"""
from __future__ import annotations

from pathlib import Path

from e2e_world import World
from test_customers_orders_e2e import assert_rerun_changes_nothing, codes, lan, web_order

BEFORE = """  return_code: "join('', [codes.sales_return, to_string(order.id)])"\n"""
AFTER = """  return_code: "join('', ['TL-', order.name])"\n"""


def edit_return_code(folder: Path) -> None:
    path = folder / "orders.yaml"
    old = path.read_text(encoding="utf-8")
    assert old.count(BEFORE) == 1
    new = old.replace(BEFORE, AFTER)
    path.write_text(new, encoding="utf-8")
    old_lines, new_lines = old.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    assert sum(a != b for a, b in zip(old_lines, new_lines)) == 1


def test_sales_return_codes_become_TL_order_name_with_one_edit(world: World):
    edit_return_code(world.copy_mappings())
    order = web_order(world, lan(world), gateway="Tiền mặt")
    oid, name = order["id"], order["name"]
    world.pay(oid)
    world.fulfill(oid)
    world.sync()
    jeans = next(li for li in order["line_items"] if li["sku"] == "QUAN-JEAN-32")
    world.refund(oid, restock=True, refund_line_items=[{"line_item_id": jeans["id"], "quantity": 1}],
                 transactions=[{"amount": 400000}])
    world.sync("orders")
    reqs = world.wait_settled()
    assert codes(reqs) == {f"BH_{oid}", f"TL-{name}", f"PC_{oid}", f"PHI_{oid}"}   # PHI_: the fee kept
    world.cancel(oid, reason="customer", restock=True, amount=480000)
    world.run("orders")
    reqs = world.wait_settled()
    # The partial return keeps its code (the refund's return is found in the ledger under the
    # new code, so it is not written again); the cancellation's return is numbered after it.
    # Everything paid was refunded in the end, so the fee kept is given back (PHI_<id>_HUY).
    assert codes(reqs) == {f"BH_{oid}", f"TL-{name}", f"PC_{oid}", f"TL-{name}_2", f"PC_{oid}_2",
                           f"TL-{name}_3", f"PHI_{oid}", f"PHI_{oid}_HUY"}
    assert all(r["status"] == "accepted" for r in reqs.values()), reqs
    for code in (f"TL-{name}", f"TL-{name}_2"):
        assert reqs[code]["payload"]["refno_finance"] == code
    assert [d["inventory_item_code"] for d in reqs[f"TL-{name}"]["payload"]["detail"]] == ["QUAN-JEAN-32"]
    assert_rerun_changes_nothing(world)


def test_validate_warns_that_the_one_edit_re_keys_the_returns_already_written(world: World):
    """The edit is in a let, not in a key template: validate still sees that the returns' keys
    read it, and warns before the next run would send the written return again. (It names
    `codes` too: the old let read it, the new one does not.)"""
    folder = world.copy_mappings()
    order = web_order(world, lan(world), gateway="Tiền mặt")
    oid = order["id"]
    world.pay(oid)
    world.fulfill(oid)
    world.sync()
    jeans = next(li for li in order["line_items"] if li["sku"] == "QUAN-JEAN-32")
    world.refund(oid, restock=True, refund_line_items=[{"line_item_id": jeans["id"], "quantity": 1}],
                 transactions=[{"amount": 400000}])
    world.sync("orders")
    assert "re-keyed" not in world.cli("validate", str(folder)).output
    edit_return_code(folder)
    output = world.cli("validate", str(folder)).output
    warned = [line for line in output.splitlines() if "re-keyed" in line]
    assert len(warned) == 1, output
    assert ("route sales_return's key '<<numbered(return_code, refund.number)>>' reads the let(s) return_code, "
            "changed") in warned[0], warned[0]
    assert "1 document(s)" in warned[0]
