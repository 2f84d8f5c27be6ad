"""`hexaflow run` (and `dlq`): what a user reads when a flow cannot run, a record cannot be
mapped, or a document conflicts; each names the file or the record (id, route, field) and the fix.

Connector messages (credentials, settings, rejections) are in test_connector_messages.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from messages_kit import hexaflow

FLOW = """\
flow: orders
source:
  connector: file
  resource: records
  params: {path: orders.jsonl}
  as: order
lookups:
  warehouses: warehouses.yaml
let:
  total: "money(order.total)"
routes:
  - name: sales_order
    when: "order.kind == 'sale'"
    target: {connector: file, document: records}
    key: "DH_<<order.code>>"
    fields:
      memo: "Đơn <<order.name>>"
      stock: "=lookup('warehouses', order.location_id)"
      date: "=local_date(order.created_at)"
      ratio: "=div(order.total, order.qty)"
      ref: "=uuid5(tenant, order.ref)"
      need: "=must(order.phone, 'order has no phone: add one in Haravan')"
      cmp: "=order.total > `5`"
      lines:
        each: order.lines
        as: line
        fields:
          amount: "=money(line.price)"
      shares: "=allocate(order.lines, [`1`], order.total, 'share')"
      size: "=length(order.name)"
      other: "=lookup(order.table || 'warehouses', order.location_id)"
  - name: flagged
    when: "order.flag > `0`"
    action: skip
"""
GOOD_RECORD = {"kind": "sale", "name": "#1", "location_id": 1, "created_at": "2024-01-01T00:00:00Z",
               "total": 10, "qty": 1, "ref": "r", "phone": "0909", "lines": [{"price": 1}]}


def _write_flow(folder: Path, records: list[dict]) -> None:
    (folder / "flow.yaml").write_text(FLOW, encoding="utf-8")
    (folder / "warehouses.yaml").write_text("'1': KHO_HCM\n", encoding="utf-8")
    (folder / "orders.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                for r in records), encoding="utf-8")


def _record(number: int, **changes) -> dict:
    record = {**GOOD_RECORD, "id": number, "code": f"C{number}", **changes}
    return {k: v for k, v in record.items() if v != "<absent>"}


# -- records that cannot be mapped: one run, one line each ------------------------------------
@dataclass
class Bad:
    id: str
    record: dict
    names: tuple[str, ...]      # the record, the route or let, the field, what is wrong
    fix: tuple[str, ...] = ()   # words of the fix, when the message itself names one


BAD_RECORDS = [
    Bad("let-not-a-number", _record(2, total=None), ("order 2: let total: money: expected a number, got null",)),
    Bad("key-field-missing", _record(4, code="<absent>"),
        ("order 4: route sales_order: key 'DH_<<order.code>>': order.code is undefined",)),
    Bad("key-field-empty", _record(5, code=""),
        ("order 5: route sales_order: key 'DH_<<order.code>>': order.code is empty",),
        ("a key is never built from an empty value",)),
    Bad("template-null", _record(6, name=None), ("order 6: route sales_order: fields.memo: order.name is null",),
        ("write <<order.name or ''>> if empty text is meant",)),
    Bad("lookup-missing-key", _record(7, location_id=9),
        ("order 7: route sales_order: fields.stock: lookup: 9 is not in table 'warehouses' (warehouses.yaml)",),
        ("add a row for it",)),
    Bad("not-a-timestamp", _record(8, created_at="yesterday"),
        ("order 8: route sales_order: fields.date: not an ISO-8601 timestamp: 'yesterday'",)),
    Bad("division-by-zero", _record(9, qty=0), ("order 9: route sales_order: fields.ratio: div: division by zero",)),
    Bad("id-from-empty-part", _record(10, ref=""),
        ("order 10: route sales_order: fields.ref: uuid5: a part is null or empty",)),
    Bad("must", _record(11, phone=""), ("order 11: route sales_order: fields.need: order has no phone",),
        ("add one in Haravan",)),
    Bad("text-not-a-number", _record(12, total="abc"), ("order 12: let total: money: expected a number, got 'abc'",)),
    Bad("inside-each", _record(13, lines=[{"price": 1}, {"price": "x"}]),
        ("order 13: route sales_order: fields.lines[1].amount: money: expected a number, got 'x'",)),
    Bad("each-not-a-list", _record(14, lines="notalist"),
        ("order 14: route sales_order: fields.lines: each 'order.lines' is not a list (got str)",)),
    Bad("record-without-id", _record(15, id="<absent>"), ("the record has no 'id' (its id)",),
        ("set source.id to the field that identifies a record",)),
    Bad("timestamp-null", _record(16, created_at=None),
        ("order 16: route sales_order: fields.date: date: expected a timestamp, got null",)),
    Bad("compare-text-number", _record(17, total="12"),
        ("order 17: route sales_order: fields.cmp: cannot compare '12' with 5",), ("number(...)",)),
    Bad("when-fails", _record(18, flag="yes"), ("order 18: route flagged: when: cannot compare 'yes' with 0",),
        ("number(...)",)),
    Bad("allocate-counts", _record(19, lines=[{"price": 1}, {"price": 2}]),
        ("order 19: route sales_order: fields.shares: allocate: 2 items but 1 weights",)),
    Bad("builtin-type", _record(20, name=5), ("order 20: route sales_order: fields.size: length():",
                                             "invalid type for value: 5")),
    Bad("lookup-unknown-table", _record(21, table="stafff"),
        ("order 21: route sales_order: fields.other: lookup: no lookup table named 'stafff'",),
        ("declare it under the flow's `lookups:`", "tables now: warehouses")),
]


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-records")
    _write_flow(folder, [_record(1)] + [b.record for b in BAD_RECORDS])
    run = hexaflow(folder, "run", "flow.yaml")
    listing = hexaflow(folder, "dlq", "list")
    return folder, run, listing


@pytest.mark.parametrize("bad", BAD_RECORDS, ids=[b.id for b in BAD_RECORDS])
def test_a_record_that_cannot_be_mapped_is_named_with_its_route_field_and_fix(bad_run, bad):
    _folder, run, _listing = bad_run
    lines = [line for line in run.stderr.splitlines() if bad.names[0] in line]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("order "), lines[0]
    for words in bad.names + bad.fix:
        assert words in lines[0], f"{words!r} not in {lines[0]!r}"


def test_a_run_with_failed_records_says_where_they_are_kept_and_how_to_replay_them(bad_run):
    _folder, run, listing = bad_run
    assert run.exit_code == 2, run.output
    assert f"read {len(BAD_RECORDS) + 1} records, {len(BAD_RECORDS)} failed" in run.stdout
    assert "kept as dead letters: `hexaflow dlq list`" in run.stdout
    assert "`hexaflow dlq replay <flow file>`" in run.stdout
    # the letter names the record and keeps the reason with its fix
    assert "record 7" in listing.stdout and "add a row for it" in listing.stdout, listing.stdout


def test_a_dry_run_keeps_no_dead_letters_and_does_not_say_so(tmp_path):
    _write_flow(tmp_path, [_record(1), _record(7, location_id=9)])
    result = hexaflow(tmp_path, "run", "flow.yaml", "--dry-run")
    assert result.exit_code == 2
    assert "order 7: route sales_order: fields.stock" in result.stderr
    assert "dead letters" not in result.output


# -- the flow cannot run -----------------------------------------------------------------------
def _lock(folder: Path, flow: str = "orders", owner: str = "other-host:1") -> None:
    from hexaflow.state import open_store
    store = open_store(str(folder / "state.db"))
    try:
        assert store.acquire_lock("default", flow, owner=owner) is not None
    finally:
        store.close()


@dataclass
class Stop:
    id: str
    prepare: object            # callable(folder) run before the command
    args: tuple[str, ...]
    exit: int
    says: tuple[str, ...]      # in stderr: the file or flow, what is wrong, the fix


def _invalid(folder: Path) -> None:
    _write_flow(folder, [_record(1)])
    (folder / "flow.yaml").write_text(FLOW.replace("    when: \"order.kind", "    wen: \"order.kind"))


def _not_yaml(folder: Path) -> None:
    _write_flow(folder, [_record(1)])
    (folder / "flow.yaml").write_text(FLOW.replace("  resource: records", "    resource: records"))


def _locked(folder: Path) -> None:
    _write_flow(folder, [_record(1)])
    _lock(folder)


def _letter_and_lock(folder: Path) -> None:
    _write_flow(folder, [_record(7, location_id=9)])
    assert hexaflow(folder, "run", "flow.yaml").exit_code == 2
    _lock(folder)


STOPS = [
    Stop("flow-file-not-found", lambda folder: None, ("run", "nothere.yaml"), 1,
         ("error: flow file not found: nothere.yaml", "looked in the current folder and ./mappings/")),
    Stop("flow-not-valid", _invalid, ("run", "flow.yaml"), 1,
         ("flow.yaml:13:5: error: unknown key 'wen' in routes[0]", "did you mean 'when'?",
          "error: flow.yaml: the flow is not valid (1 errors); run `hexaflow validate flow.yaml`")),
    Stop("flow-not-yaml", _not_yaml, ("run", "flow.yaml"), 1,
         ("flow.yaml:4:13: error: mapping values are not allowed", "check the indentation",
          "error: flow.yaml: the flow is not valid; run `hexaflow validate flow.yaml`")),
    Stop("already-running", _locked, ("run", "flow.yaml"), 1,
         ("error: flow 'orders' (tenant default) is already running (other-host:1)",
          "wait for it to finish, then run again", "expires after 10 min")),
    Stop("dry-run-ignores-the-lock", _locked, ("run", "flow.yaml", "--dry-run"), 0, ("orders (dry run)",)),
    Stop("no-flow-argument", lambda folder: None, ("run",), 2, ("Missing argument 'FLOW'", "run --help' for help")),
    Stop("dlq-show-unknown", lambda folder: None, ("dlq", "show", "99"), 1,
         ("error: no open dead letter #99", "hexaflow dlq list shows them")),
    Stop("dlq-drop-unknown", lambda folder: None, ("dlq", "drop", "99"), 1,
         ("error: no open dead letter #99", "hexaflow dlq list shows them")),
    Stop("dlq-replay-while-running", _letter_and_lock, ("dlq", "replay", "flow.yaml"), 1,
         ("error: flow 'orders' is running; replay when it has finished",)),
    Stop("dlq-replay-flow-not-found", lambda folder: None, ("dlq", "replay", "nothere.yaml"), 1,
         ("error: flow file not found: nothere.yaml",)),
]


@pytest.mark.parametrize("stop", STOPS, ids=[s.id for s in STOPS])
def test_a_flow_that_cannot_run_names_the_file_and_the_fix(tmp_path, stop):
    stop.prepare(tmp_path)
    result = hexaflow(tmp_path, *stop.args)
    assert result.exit_code == stop.exit, result.output
    text = result.stderr + (result.stdout if stop.exit == 0 else "")
    for words in stop.says:
        assert words in text, f"{words!r} not in {text!r}"


# -- conflicts -------------------------------------------------------------------------------
TWO_ROUTES = """\
flow: orders
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
routes:
  - name: draft
    when: "order.status == 'open'"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    fields: {status: "=order.status"}
  - name: final
    when: "order.status == 'paid'"
    target: {connector: file, document: records}
    key: "DH_<<order.id>>"
    fields: {status: "=order.status"}
"""


def test_two_routes_writing_one_document_name_both_routes_and_the_fix(tmp_path):
    (tmp_path / "flow.yaml").write_text(TWO_ROUTES)
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "status": "open"}\n')
    assert hexaflow(tmp_path, "run", "flow.yaml").exit_code == 0
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "status": "paid"}\n')
    result = hexaflow(tmp_path, "run", "flow.yaml")
    assert ("order 1: route final: conflict: DH_1 was already written by route draft (flow orders); "
            "route final would change it: make the two routes' `when` conditions exclusive") in result.stderr


def test_a_document_the_target_generated_is_a_conflict_to_handle_by_hand(tmp_path):
    from hexaflow.state import open_store
    (tmp_path / "flow.yaml").write_text(TWO_ROUTES)
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "status": "open", "note": "a"}\n')
    assert hexaflow(tmp_path, "run", "flow.yaml").exit_code == 0
    store = open_store(str(tmp_path / "state.db"))        # the accountant generated it meanwhile
    try:
        entry = store.entry("default", "orders", "draft", "DH_1")
        store.apply_result("default", "file", entry.target_ref, "generated")
    finally:
        store.close()
    (tmp_path / "flow.yaml").write_text(TWO_ROUTES.replace('{status: "=order.status"}\n  - name: final',
                                                           '{status: "=order.status", note: "=order.note"}\n  - name: final'))
    (tmp_path / "orders.jsonl").write_text('{"id": 1, "status": "open", "note": "b"}\n')
    result = hexaflow(tmp_path, "run", "flow.yaml")
    assert ("order 1: route draft: conflict: DH_1 changed in the source after it was generated in file; "
            "change it by hand") in result.stderr, result.output


# -- the lock lost in the middle of a run --------------------------------------------------------
def test_a_run_that_lost_its_lock_says_what_happened_and_to_run_again(tmp_path):
    """Losing the lock takes two processes racing (tests/reliability/test_concurrency.py does
    it for real); here the store is asked directly with a fencing number another run replaced."""
    from hexaflow.state import LostLock, open_store
    store = open_store(str(tmp_path / "state.db"))
    try:
        stale = store.acquire_lock("default", "orders", ttl=600, owner="a:1")
        store.db.execute("UPDATE locks SET fence = fence + 1")          # another run took over
        for attempt in (lambda: store.renew_lock("default", "orders", stale),
                        lambda: store.set_cursor("default", "orders", "x", stale)):
            with pytest.raises(LostLock) as lost:
                attempt()
            message = str(lost.value)
            assert "flow 'orders'" in message and "lock" in message
            assert "run it again once the other run has finished" in message
    finally:
        store.close()


@pytest.mark.parametrize("args, state, says", [
    (("run", "flow.yaml"), "mysql://db/hexaflow",
     "error: HEXAFLOW_STATE=mysql://…: not a state store; use a file path, sqlite:///path or postgresql://user@host/database"),
    (("run", "flow.yaml"), "mysql://hexa:s3cret-pw@db:5432/hexaflow", "error: HEXAFLOW_STATE=mysql://…: not a state store; use a file path, sqlite:///path or postgresql://user@host/database"),
    # nothing listens on port 1: the server cannot be reached (the password is never shown)
    (("run", "flow.yaml"), "postgresql://hexa:s3cret-pw@127.0.0.1:1/hexaflow",
     "error: HEXAFLOW_STATE=postgresql://hexa@127.0.0.1:1/hexaflow: the PostgreSQL state store failed ("),
    (("run", "flow.yaml"), "<folder>/flow.yaml/state.db", "cannot open the state file"),
    (("run", "flow.yaml"), "<folder>/notadb.db", "cannot open the state file (file is not a database)"),
    (("status",), "mysql://db/hexaflow", "error: HEXAFLOW_STATE=mysql://…: not a state store"),
    (("trace", "1"), "mysql://db/hexaflow", "error: HEXAFLOW_STATE=mysql://…: not a state store"),
    (("dlq", "list"), "mysql://db/hexaflow", "error: HEXAFLOW_STATE=mysql://…: not a state store"),
    (("dlq", "replay", "flow.yaml"), "mysql://db/hexaflow", "error: HEXAFLOW_STATE=mysql://…"),
], ids=["run-url", "run-url-with-password", "run-server-unreachable", "run-under-a-file", "run-not-a-database", "status",
        "trace", "dlq-list", "dlq-replay"])
def test_a_state_setting_that_cannot_be_opened_is_an_error_line_not_a_traceback(tmp_path, args, state, says):
    _write_flow(tmp_path, [_record(1)])
    (tmp_path / "notadb.db").write_text("this is not SQLite\n" * 100)
    result = hexaflow(tmp_path, *args, env={"HEXAFLOW_STATE": state.replace("<folder>", str(tmp_path))})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert says in result.stderr, result.stderr
    assert "Traceback" not in result.output and "s3cret-pw" not in result.output
    assert not (tmp_path / "out").exists()          # nothing was written


@pytest.mark.parametrize("name, value, says", [
    ("HEXAFLOW_SETTLE_SECONDS", "abc", "error: HEXAFLOW_SETTLE_SECONDS=abc: not a number of seconds; e.g. 5"),
    ("HEXAFLOW_SETTLE_SECONDS", "-1", "error: HEXAFLOW_SETTLE_SECONDS=-1: not a number of seconds; e.g. 5"),
    ("HEXAFLOW_BATCH_DELAY", "0,5", "error: HEXAFLOW_BATCH_DELAY=0,5: not a number of seconds; e.g. 0.5"),
    ("HEXAFLOW_READ_AHEAD", "two", "error: HEXAFLOW_READ_AHEAD=two: not a number of pages; e.g. 2"),
])
def test_a_setting_that_is_not_a_number_names_the_variable_and_an_example(tmp_path, name, value, says):
    _write_flow(tmp_path, [_record(1)])
    result = hexaflow(tmp_path, "run", "flow.yaml", env={name: value})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert says in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()          # stopped before anything was written


def test_numeric_settings_that_are_numbers_are_taken(tmp_path):
    _write_flow(tmp_path, [_record(1)])
    result = hexaflow(tmp_path, "run", "flow.yaml", env={"HEXAFLOW_BATCH_DELAY": " 0.1 ",
                                                          "HEXAFLOW_READ_AHEAD": "0"})
    assert result.exit_code == 0, result.output
