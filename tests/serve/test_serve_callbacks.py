"""``hexaflow serve`` receives MISA callbacks: results move the ledger forward, a rejection
becomes a dead letter with MISA's message, a forged callback is refused and changes nothing."""
from __future__ import annotations

import json
import logging

import pytest

from hexaflow.connectors.misa.callbacks import (DELETE_PROCESSED, SAVE_PROCESSED,
                                                VOUCHER_GENERATED, build_callback)

from serve_kit import CREDENTIALS, TIMEOUT, wait_for


def vouchers(shop, order: dict) -> list:
    return [e for e in shop.ledger() if e.source_id == str(order["id"]) and e.document == "voucher"]


def callback_stats(shop) -> dict:
    return shop.http.get(f"{shop.misa_url}/_sandbox/callback").json()


def test_callbacks_move_queued_documents_to_accepted_or_to_dead_letters(shop, monkeypatch):
    # Runs must end before MISA has answered, so that only the callbacks can settle them.
    monkeypatch.setenv("HEXAFLOW_SETTLE_SECONDS", "0")
    # MISA answers later than the run's own poll, so only the callback can settle the rows
    # (well later: on a loaded machine the poll can come a second after the send).
    shop.misa_options(processing_delay_ms=2000)
    server = shop.serve("orders")
    answer = shop.http.post(f"{shop.misa_url}/_sandbox/callback",
                            json={"url": server.hook_url("misa"), "enabled": True})
    assert answer.status_code == 200, answer.text
    customer = shop.lan()
    good = shop.create_order(customer)
    bad = shop.create_order(customer, skus=("KHONG-CO-TRONG-MISA",))   # an item MISA lacks
    for order in (good, bad):
        assert shop.post_hook("haravan", *shop.delivery(order)).status_code == 200
    assert server.dispatcher.wait_idle(TIMEOUT)
    runs = server.dispatcher.runs
    assert [e.state for e in vouchers(shop, good)] == ["queued"]
    assert [e.state for e in vouchers(shop, bad)] == ["queued"]

    wait_for(lambda: [e.state for e in vouchers(shop, good)] == ["accepted"], "good order accepted")
    wait_for(lambda: [e.state for e in vouchers(shop, bad)] == ["rejected"], "bad order rejected")
    # (the sandbox counts a delivery once serve's answer is back: wait for it)
    wait_for(lambda: callback_stats(shop)["delivered"] >= 1, "the sandbox to count its callbacks")
    assert server.dispatcher.runs == runs        # no later run settled them: the callbacks did

    rejected = vouchers(shop, bad)[0]
    misa = {r["org_refid"]: r for r in shop.request_rows()}[rejected.target_ref]
    assert misa["status"] == "rejected" and misa["errors"]
    letters = [d for d in shop.dead_letters() if d["source_id"] == str(bad["id"])]
    assert len(letters) == 1
    assert letters[0]["key"] == rejected.key
    assert misa["errors"][0]["error_code"] in letters[0]["reason"]
    assert misa["errors"][0]["error_message"].split(";")[0] in letters[0]["reason"]
    assert rejected.message and rejected.code == misa["errors"][0]["error_code"]


def test_a_forged_callback_is_refused_and_changes_nothing(shop):
    server = shop.serve("orders")
    order = shop.create_order(shop.lan())
    assert shop.post_hook("haravan", *shop.delivery(order)).status_code == 200
    assert server.dispatcher.wait_idle(TIMEOUT)
    voucher = vouchers(shop, order)[0]
    before = (shop.ledger(), shop.dead_letters())

    data = [{"org_refid": voucher.target_ref, "success": True}]
    forged = build_callback(VOUCHER_GENERATED, data, app_id=CREDENTIALS["MISA_APP_ID"],
                            org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"], key="guessed-key")
    unsigned = dict(forged, signature="")
    for body in (forged, unsigned):
        answer = shop.post_hook("misa", json.dumps(body).encode(), {"Content-Type": "application/json"})
        assert answer.status_code == 401, answer.text
        assert answer.json()["Success"] is False and answer.json()["ErrorCode"] == "InvalidParam"
        assert CREDENTIALS["MISA_APP_ID"] not in answer.text
    not_json = shop.post_hook("misa", b"not json", {"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["Success"] is False
    assert (shop.ledger(), shop.dead_letters()) == before

    # The same callback signed with the real key (MISA's app id), once MISA has generated the
    # voucher, is applied (after a poll of MISA confirms it).
    sandbox_does(shop, voucher.target_ref, "generate")
    genuine = build_callback(VOUCHER_GENERATED, data, app_id=CREDENTIALS["MISA_APP_ID"],
                             org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"],
                             key=CREDENTIALS["MISA_APP_ID"])
    answer = shop.post_hook("misa", json.dumps(genuine).encode(), {"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json() == {"Success": True}
    wait_for(lambda: [e.state for e in vouchers(shop, order)] == ["generated"],
             "the confirmed result")


def test_a_result_that_overtakes_its_send_asks_for_a_polling_run(shop):
    server = shop.serve("orders")
    body = build_callback(VOUCHER_GENERATED, [{"org_refid": "not-recorded-yet", "success": True}],
                          app_id=CREDENTIALS["MISA_APP_ID"],
                          org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"],
                          key=CREDENTIALS["MISA_APP_ID"])
    answer = shop.post_hook("misa", json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json() == {"Success": True}
    # The flows writing to MISA run shortly (each run ends by polling its queued documents).
    assert server.dispatcher.pending() == [("default", "orders")]
    wait_for(lambda: server.dispatcher.runs == 1, "the polling run")


def test_queued_results_are_polled_even_when_the_source_is_down(shop, monkeypatch):
    monkeypatch.setenv("HEXAFLOW_SETTLE_SECONDS", "0")
    # No callback URL and MISA slower than the run's own poll (by far, for a loaded machine):
    # the documents stay queued.
    shop.misa_options(processing_delay_ms=2000)
    shop.config["HARAVAN_MAX_ATTEMPTS"] = "1"
    server = shop.serve("orders")
    order = shop.create_order(shop.lan())
    assert shop.post_hook("haravan", *shop.delivery(order)).status_code == 200
    assert server.dispatcher.wait_idle(TIMEOUT)
    runs = server.dispatcher.runs
    assert [e.state for e in vouchers(shop, order)] == ["queued"]
    wait_for(lambda: all(r["status"] == "accepted" for r in shop.request_rows()), "MISA to accept")

    answer = shop.http.post(f"{shop.haravan_url}/_sandbox/faults",
                            json={"error_rate": 1.0, "kinds": ["500"]})
    assert answer.status_code == 200, answer.text
    server.dispatcher.request("default", "orders")      # what the scheduler's tick does

    wait_for(lambda: [e.state for e in vouchers(shop, order)] == ["accepted"], "the poll")
    assert server.dispatcher.runs == runs                # the run itself failed: Haravan is down


# -- forged, replayed and stale callbacks (issue 12, finding 5) --------------------------------
JSON = {"Content-Type": "application/json"}


def misa_callback(data_type: int, data, **fields) -> bytes:
    """A callback as MISA sends it, signed with the app id (the key MISA is believed to use)."""
    body = build_callback(data_type, data, app_id=CREDENTIALS["MISA_APP_ID"],
                          org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"],
                          key=CREDENTIALS["MISA_APP_ID"])
    return json.dumps({**body, **fields}).encode()


def failure(ref: str, session: str) -> list[dict]:
    return [{"org_refid": ref, "success": False, "error_code": "InvalidParam",
             "error_message": "Mã hàng <AO-THUN-M> không tồn tại", "session_id": session}]


def one_voucher(shop, server) -> tuple[dict, object]:
    """An order sent through serve, once its run is over: (order, its voucher's ledger row)."""
    order = shop.create_order(shop.lan())
    assert shop.post_hook("haravan", *shop.delivery(order)).status_code == 200
    assert server.dispatcher.wait_idle(TIMEOUT)
    return order, vouchers(shop, order)[0]


def accepted_voucher(shop) -> tuple[object, dict, object]:
    """serve, and a voucher MISA accepted (the run's own poll saw it)."""
    server = shop.serve("orders")
    order, voucher = one_voucher(shop, server)
    assert voucher.state == "accepted", voucher
    return server, order, voucher


def queued_voucher(shop, monkeypatch) -> tuple[object, dict, object]:
    """serve, and a voucher MISA has not processed yet (and will not for a few seconds)."""
    monkeypatch.setenv("HEXAFLOW_SETTLE_SECONDS", "0")
    shop.misa_options(processing_delay_ms=5000)
    server = shop.serve("orders")
    order, voucher = one_voucher(shop, server)
    assert voucher.state == "queued", voucher
    return server, order, voucher


def state_of(shop, order: dict) -> str:
    return vouchers(shop, order)[0].state


def misa_state(shop, ref: str) -> str:
    return {r["org_refid"]: r for r in shop.request_rows()}[ref]["status"]


def sandbox_does(shop, ref: str, action: str) -> None:
    """The accountant in AMIS: generate or post the voucher of a request."""
    answer = shop.http.post(f"{shop.misa_url}/_sandbox/requests/{ref}/{action}")
    assert answer.status_code == 200, answer.text


def test_a_genuine_callback_re_sent_with_another_data_type_changes_nothing(shop):
    server, order, voucher = accepted_voucher(shop)
    saved = [{"org_refid": voucher.target_ref, "success": True, "session_id": "s-1"}]
    genuine = json.loads(misa_callback(SAVE_PROCESSED, saved))
    assert shop.post_hook("misa", json.dumps(genuine).encode(), JSON).json() == {"Success": True}
    runs = server.dispatcher.runs
    # The signature covers `data` only: the same data re-typed as "generated" or "deleted".
    for data_type in (VOUCHER_GENERATED, DELETE_PROCESSED):
        retyped = json.dumps(dict(genuine, data_type=data_type)).encode()
        answer = shop.post_hook("misa", retyped, JSON)
        assert answer.status_code == 200 and answer.json() == {"Success": True}
        assert state_of(shop, order) == "accepted"
    assert server.dispatcher.wait_idle(TIMEOUT)
    assert state_of(shop, order) == "accepted"
    assert misa_state(shop, voucher.target_ref) == "accepted"
    assert server.dispatcher.runs == runs          # seen before: nothing applied, nothing asked


def test_the_same_callback_replayed_is_acknowledged_and_applies_nothing(shop, monkeypatch, caplog):
    server, order, voucher = queued_voucher(shop, monkeypatch)
    rejection = misa_callback(SAVE_PROCESSED, failure(voucher.target_ref, "s-old"))
    assert shop.post_hook("misa", rejection, JSON).status_code == 200
    assert state_of(shop, order) == "rejected"
    # The next run sends the rejected voucher again (its cause may be gone): queued again.
    server.dispatcher.request("default", "orders")
    wait_for(lambda: server.dispatcher.idle() and state_of(shop, order) == "queued", "the re-send")
    before = (shop.ledger(), shop.dead_letters())

    with caplog.at_level(logging.WARNING, logger="hexaflow.serve"):
        answer = shop.post_hook("misa", rejection, JSON)        # the old rejection, replayed
    assert answer.status_code == 200 and answer.json() == {"Success": True}
    assert (shop.ledger(), shop.dead_letters()) == before
    assert any("delivery seen before" in r.getMessage() and "nothing in it was applied"
               in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("field, value, says", [
    ("app_id", "another-partner-app", "callback is for another application"),
    ("org_company_code", "0399999999", "callback is for another company"),
])
def test_a_callback_for_another_app_or_company_is_refused(shop, monkeypatch, field, value, says):
    server, order, voucher = queued_voucher(shop, monkeypatch)
    saved = [{"org_refid": voucher.target_ref, "success": True, "session_id": "s-1"}]
    answer = shop.post_hook("misa", misa_callback(SAVE_PROCESSED, saved, **{field: value}), JSON)
    assert answer.status_code == 400, answer.text
    assert answer.json()["Success"] is False and says in answer.json()["ErrorMessage"]
    assert CREDENTIALS["MISA_APP_ID"] not in answer.text
    assert state_of(shop, order) == "queued"
    assert [row for row in shop.inbox() if row["connector"] == "misa"] == []
    assert server.dispatcher.pending() == []


def test_a_stale_failure_after_acceptance_changes_nothing_and_sends_nothing(shop):
    server, order, voucher = accepted_voucher(shop)
    sent = shop.vouchers_sent()
    stale = misa_callback(SAVE_PROCESSED, failure(voucher.target_ref, "s-stale"))
    assert shop.post_hook("misa", stale, JSON).json() == {"Success": True}
    assert state_of(shop, order) == "accepted" and shop.dead_letters() == []
    server.dispatcher.request("default", "orders")
    wait_for(lambda: server.dispatcher.idle() and server.dispatcher.runs >= 2, "the next run")
    assert state_of(shop, order) == "accepted" and shop.vouchers_sent() == sent


def test_a_posted_document_is_never_deleted(shop):
    server, order, voucher = accepted_voucher(shop)
    answer = shop.http.post(f"{shop.misa_url}/_sandbox/callback",
                            json={"url": server.hook_url("misa"), "enabled": True})
    assert answer.status_code == 200, answer.text
    sandbox_does(shop, voucher.target_ref, "generate")   # MISA's callback, then serve's poll
    wait_for(lambda: state_of(shop, order) == "generated", "the generation, confirmed")
    sandbox_does(shop, voucher.target_ref, "post")
    wait_for(lambda: state_of(shop, order) == "posted", "the posting")

    deleted = [{"org_refid": voucher.target_ref, "success": True, "session_id": "s-del"}]
    assert shop.post_hook("misa", misa_callback(DELETE_PROCESSED, deleted), JSON).status_code == 200
    assert server.dispatcher.wait_idle(TIMEOUT)
    assert state_of(shop, order) == "posted" and misa_state(shop, voucher.target_ref) == "posted"


def test_a_generated_callback_misa_did_not_generate_is_refused_by_the_poll(shop, caplog):
    server, order, voucher = accepted_voucher(shop)
    runs = server.dispatcher.runs
    generated = [{"org_refid": voucher.target_ref, "success": True, "session_id": "s-gen"}]
    with caplog.at_level(logging.INFO, logger="hexaflow.serve"):
        answer = shop.post_hook("misa", misa_callback(VOUCHER_GENERATED, generated), JSON)
        assert answer.status_code == 200 and answer.json() == {"Success": True}
        wait_for(lambda: server.dispatcher.runs > runs and server.dispatcher.idle(),
                 "the run that asks MISA")
    assert state_of(shop, order) == "accepted"
    assert misa_state(shop, voucher.target_ref) == "accepted"
    assert any("reports 1 document(s) generated: applied only once a poll of misa confirms it"
               in r.getMessage() for r in caplog.records)


def test_a_confirmation_that_cannot_reach_misa_leaves_the_row_and_is_logged(shop, caplog):
    server, order, voucher = accepted_voucher(shop)
    sandbox_does(shop, voucher.target_ref, "generate")    # no callback URL: MISA says nothing
    faults = f"{shop.misa_url}/_sandbox/faults"
    assert shop.http.post(faults, json={"error_rate": 1.0, "kinds": ["503"]}).status_code == 200
    generated = [{"org_refid": voucher.target_ref, "success": True, "session_id": "s-gen"}]
    with caplog.at_level(logging.ERROR, logger="hexaflow.serve"):
        assert shop.post_hook("misa", misa_callback(VOUCHER_GENERATED, generated),
                              JSON).status_code == 200
        # The run's poll gives up after its bounded retries (about 8 s) and says so.
        wait_for(lambda: any("serve: flow orders:" in r.getMessage() for r in caplog.records),
                 "the failed confirmation in the log", timeout=30)
    assert state_of(shop, order) == "accepted"
    assert shop.http.post(faults, json={}).status_code == 200
    wait_for(lambda: state_of(shop, order) == "generated", "polling to catch up", timeout=30)
