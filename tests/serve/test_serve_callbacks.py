"""``hexaflow serve`` receives MISA callbacks: results move the ledger forward, a rejection
becomes a dead letter with MISA's message, a forged callback is refused and changes nothing."""
from __future__ import annotations

import json

from hexaflow.connectors.misa.callbacks import VOUCHER_GENERATED, build_callback

from serve_kit import CREDENTIALS, TIMEOUT, wait_for


def vouchers(shop, order: dict) -> list:
    return [e for e in shop.ledger() if e.source_id == str(order["id"]) and e.document == "voucher"]


def callback_stats(shop) -> dict:
    return shop.http.get(f"{shop.misa_url}/_sandbox/callback").json()


def test_callbacks_move_queued_documents_to_accepted_or_to_dead_letters(shop, monkeypatch):
    # Runs must end before MISA has answered, so that only the callbacks can settle them.
    monkeypatch.setenv("HEXAFLOW_SETTLE_SECONDS", "0")
    # MISA answers later than the run's own poll, so only the callback can settle the rows.
    shop.misa_options(processing_delay_ms=400)
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

    # The same callback signed with the real key (MISA's app id) is applied.
    genuine = build_callback(VOUCHER_GENERATED, data, app_id=CREDENTIALS["MISA_APP_ID"],
                             org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"],
                             key=CREDENTIALS["MISA_APP_ID"])
    answer = shop.post_hook("misa", json.dumps(genuine).encode(), {"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json() == {"Success": True}
    assert [e.state for e in vouchers(shop, order)] == ["generated"]


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
    # No callback URL and MISA slower than the run's own poll: the documents stay queued.
    shop.misa_options(processing_delay_ms=300)
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
