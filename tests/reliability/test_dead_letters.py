"""Dead letters (issue 6): orders whose location is not in the warehouse table (a copy of
mappings/ in tmp_path without the Đà Nẵng row) are kept as dead letters with their id and the
reason, while every other order is written (exit 2). After the row is put back,
``hexaflow dlq replay orders.yaml`` writes their documents exactly once; a second replay and a
normal run write nothing more, and MISA ends up equal to a clean reference run.
"""
from __future__ import annotations

import re
import shutil

import pytest

from reliability_kit import MAPPINGS, Sandboxes, assert_same_documents, hexaflow, ledger_states

MISSING_LOCATION = 963416      # KHO_DN


@pytest.fixture(scope="module")
def dead_lettered(sandboxes: Sandboxes, reference, tmp_path_factory, module_state_target):
    """A first run with the Đà Nẵng row missing from the copy's warehouse table."""
    tmp_path = tmp_path_factory.mktemp("dead_letters")
    expected = reference(("orders",), 200)
    sandboxes.reset(200)
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    table = tmp_path / "mappings" / "warehouses.yaml"
    good = table.read_text(encoding="utf-8")
    bad = "\n".join(line for line in good.splitlines() if f"location_id: {MISSING_LOCATION}" not in line)
    assert bad != good
    table.write_text(bad + "\n", encoding="utf-8")
    state = module_state_target
    env = sandboxes.env(state)

    first = hexaflow(["run", "orders.yaml"], env, tmp_path)
    sandboxes.drain()
    return {"tmp": tmp_path, "env": env, "state": state, "table": table, "good": good,
            "first": first, "expected": expected, "after_first": sandboxes.requests()}


def test_bad_records_are_dead_lettered_with_id_and_reason_and_the_rest_written(
        sandboxes: Sandboxes, dead_lettered):
    tmp_path, env, expected = dead_lettered["tmp"], dead_lettered["env"], dead_lettered["expected"]
    first, after_first = dead_lettered["first"], dead_lettered["after_first"]
    assert first.returncode == 2, first.stderr[-2000:]
    failed = re.findall(r"^order (\d+): .*not in table 'warehouses_by_location'", first.stderr, re.M)
    assert failed, first.stderr[-2000:]
    failed_ids = set(failed)
    # The failed orders have no document in MISA; every other order has all of its own.
    refnos_by_order = {}
    for r in expected["requests"]:
        refnos_by_order.setdefault(str(r["org_refno"]), set()).add(r["refno_finance"])
    held = {r["refno_finance"] for r in after_first}
    for order_id, refnos in refnos_by_order.items():
        if order_id in failed_ids:
            assert not refnos & held, (order_id, refnos & held)
        else:
            assert refnos <= held, (order_id, refnos - held)

    listing = hexaflow(["dlq", "list"], env, tmp_path)
    assert listing.returncode == 0, listing.stderr
    listed = set(re.findall(r"record (\d+)", listing.stdout))
    assert listed == failed_ids, (listed ^ failed_ids)
    assert listing.stdout.count("not in table 'warehouses_by_location'") == len(failed_ids), listing.stdout
    letter = re.search(r"#(\d+)", listing.stdout).group(1)
    shown = hexaflow(["dlq", "show", letter], env, tmp_path)
    assert shown.returncode == 0 and "reason:" in shown.stdout and "record:" in shown.stdout, shown

    # A normal run does not retry them (the cursor passed them) and writes nothing new.
    again = hexaflow(["run", "orders.yaml"], env, tmp_path)
    assert again.returncode in (0, 2), again.stderr
    sandboxes.drain()
    assert len(sandboxes.requests()) == len(after_first)
    print(f"\ndead letters: {len(failed_ids)} orders dead-lettered with their reason, "
          f"{len(after_first)} requests written for the others")


def test_replay_after_fixing_the_table_writes_them_exactly_once(sandboxes: Sandboxes,
                                                                dead_lettered):
    tmp_path, env, expected = dead_lettered["tmp"], dead_lettered["env"], dead_lettered["expected"]
    state, table, good = dead_lettered["state"], dead_lettered["table"], dead_lettered["good"]
    after_first = dead_lettered["after_first"]

    table.write_text(good, encoding="utf-8")           # fix the table
    replay = hexaflow(["dlq", "replay", "orders.yaml"], env, tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    sandboxes.drain()
    after_replay = sandboxes.requests()
    calls_after_replay = len(sandboxes.http.get(f"{sandboxes.misa}/_sandbox/calls").json()["calls"])
    assert len(after_replay) > len(after_first)

    second = hexaflow(["dlq", "replay", "orders.yaml"], env, tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "written" not in second.stdout and "queued" not in second.stdout, second.stdout
    calls = sandboxes.http.get(f"{sandboxes.misa}/_sandbox/calls").json()["calls"]
    assert not [c for c in calls[calls_after_replay:] if c["function"] in ("save", "save_dictionary")], \
        calls[calls_after_replay:]
    empty = hexaflow(["dlq", "list"], env, tmp_path)
    assert "no open dead letters" in empty.stdout, empty.stdout

    final = hexaflow(["run", "orders.yaml"], env, tmp_path)
    assert final.returncode == 0, final.stderr
    got = sandboxes.misa_snapshot()
    states = ledger_states(state)
    print(f"\nreplay: {len(after_first)} requests before the replay, {len(after_replay)} after; "
          f"ledger {dict(states)}")
    assert not states.get("planned") and not states.get("failed"), dict(states)
    assert_same_documents(got, expected)
