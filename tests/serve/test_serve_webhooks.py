"""``hexaflow serve`` receives Haravan webhooks: verify, store once, acknowledge, run the flow.

Everything runs over loopback: the sandboxes and serve in-process (see conftest.py).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from serve_kit import TIMEOUT, wait_for

SALES_ORDER = 20


def orders_requests(shop, order: dict) -> list[dict]:
    return [r for r in shop.request_rows() if str(r["org_refno"]) == str(order["id"])]


def test_a_signed_webhook_for_a_new_order_queues_its_documents_in_misa(shop):
    server = shop.serve("customers", "orders")          # no scheduler: only webhooks run them
    answer = shop.http.post(f"{shop.haravan_url}/_sandbox/webhooks",
                            json={"url": server.hook_url("haravan"), "topics": []})
    assert answer.status_code == 201, answer.text

    order = shop.create_order(shop.lan())               # the sandbox POSTs orders/create

    reqs = wait_for(lambda: orders_requests(shop, order), "the order's voucher request in MISA")
    assert [r["voucher_type"] for r in reqs] == [SALES_ORDER]
    assert reqs[0]["status"] in ("queued", "accepted")
    inbox = [row for row in shop.inbox() if row["record_id"] == str(order["id"])]
    assert inbox and all(row["connector"] == "haravan" and row["resource"] == "orders"
                         for row in inbox)
    assert server.dispatcher.wait_idle(TIMEOUT)
    ledger = [e for e in shop.ledger() if e.source_id == str(order["id"]) and not e.is_ensure]
    assert [e.route for e in ledger] == ["sales_order"]
    assert ledger[0].state in ("queued", "accepted")
    # The customer's own webhook ran the customers flow (one event per source and version).
    assert {row["resource"] for row in shop.inbox()} == {"customers", "orders"}
    assert {e.flow for e in shop.ledger("customers")} == {"customers"}
    # Every event is marked handled once the run that read it has completed.
    wait_for(lambda: all(row["handled_at"] for row in shop.inbox()), "inbox rows handled")


def test_a_forged_or_unsigned_webhook_gets_401_and_changes_nothing(shop):
    server = shop.serve("orders")
    order = shop.create_order(shop.lan())

    raw, headers = shop.delivery(order, secret="not-the-shop-secret")
    forged = shop.post_hook("haravan", raw, headers)
    unsigned = shop.post_hook("haravan", raw, {k: v for k, v in headers.items()
                                               if k != "X-Haravan-Hmacsha256"})
    tampered_raw = raw.replace(b'"quantity": 1', b'"quantity": 9')
    assert tampered_raw != raw
    tampered = shop.post_hook("haravan", tampered_raw, headers | shop.delivery(order)[1])

    for answer in (forged, unsigned, tampered):
        assert answer.status_code == 401, answer.text
        assert "HARAVAN_WEBHOOK_SECRET" in answer.text
        assert shop.config["HARAVAN_WEBHOOK_SECRET"] not in answer.text
    assert server.dispatcher.pending() == [] and server.dispatcher.idle()
    assert server.dispatcher.wait_idle(1.0)
    assert shop.inbox() == []
    assert server.dispatcher.runs == 0
    assert shop.ledger() == []
    assert shop.request_rows() == [] and shop.vouchers_sent() == 0


def test_the_same_delivery_five_times_and_five_times_at_once_gives_one_set_of_documents(shop):
    server = shop.serve("orders")
    customer = shop.lan()
    first = shop.create_order(customer)
    second = shop.create_order(customer, skus=("AO-THUN-M", "QUAN-JEAN-32"))

    raw, headers = shop.delivery(first)
    for _ in range(5):
        answer = shop.post_hook("haravan", raw, headers)
        assert answer.status_code == 200, answer.text
    assert server.dispatcher.wait_idle(TIMEOUT)

    raw2, headers2 = shop.delivery(second)
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: shop.post_hook("haravan", raw2, headers2), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert server.dispatcher.wait_idle(TIMEOUT)

    inbox = shop.inbox()
    assert sorted(row["record_id"] for row in inbox) == sorted([str(first["id"]), str(second["id"])])
    # One run per new event at most: the duplicates asked for nothing.
    assert 1 <= server.dispatcher.runs <= 2
    reqs = shop.request_rows()
    for order in (first, second):
        assert [r["voucher_type"] for r in reqs if str(r["org_refno"]) == str(order["id"])] == [SALES_ORDER]
    # Each voucher was sent to MISA once, and each document planned once in the ledger.
    assert shop.vouchers_sent() == len(reqs) == 2
    vouchers = [e for e in shop.ledger() if not e.is_ensure]
    assert len(vouchers) == 2 and all(e.attempts == 1 for e in vouchers)


def test_a_topic_no_served_flow_reads_is_acknowledged_and_ignored(shop):
    server = shop.serve("orders")
    customer = shop.lan()
    raw, headers = shop.delivery(customer, topic="customers/create")   # customers.yaml not served
    answer = shop.post_hook("haravan", raw, headers)
    assert answer.status_code == 200, answer.text
    unknown = shop.post_hook("haravan", *shop.delivery({"id": 1}, topic="shop/update"))
    assert unknown.status_code == 200, unknown.text
    assert shop.inbox() == [] and server.dispatcher.pending() == []
    assert shop.http.post(server.url + "/hooks/nobody", content=b"{}").status_code == 404
    health = shop.http.get(server.url + "/health").json()
    assert health["ok"] is True and health["hooks"] == ["haravan", "misa"]


def test_the_scheduler_alone_picks_up_a_new_order(shop):
    server = shop.serve("orders", interval=0.5)         # no webhook registered
    wait_for(lambda: server.dispatcher.runs >= 1, "the first scheduled run")

    order = shop.create_order(shop.lan())

    reqs = wait_for(lambda: orders_requests(shop, order), "the order's voucher request in MISA",
                    timeout=10.0)
    assert [r["voucher_type"] for r in reqs] == [SALES_ORDER]
    assert shop.inbox() == []


def test_a_flow_locked_by_another_run_is_run_once_the_lock_is_free(shop):
    from hexaflow.state import open_store
    store = open_store(str(shop.state))
    fence = store.acquire_lock("default", "orders", ttl=60, owner="hexaflow run by hand")
    assert fence is not None
    server = shop.serve("orders")
    order = shop.create_order(shop.lan())
    assert shop.post_hook("haravan", *shop.delivery(order)).status_code == 200

    # While the other run holds the lock, serve waits (and keeps asking) instead of failing.
    wait_for(lambda: server.dispatcher.pending() == [("default", "orders")], "a retry pending")
    assert server.dispatcher.runs == 0 and orders_requests(shop, order) == []
    store.release_lock("default", "orders", fence)
    store.close()

    wait_for(lambda: orders_requests(shop, order), "the order's voucher request in MISA")
    assert server.dispatcher.wait_idle(TIMEOUT)


def test_an_event_acknowledged_before_a_crash_is_run_at_start_up(shop):
    from hexaflow.state import open_store
    order = shop.create_order(shop.lan())
    store = open_store(str(shop.state))                 # what the crashed serve had stored
    assert store.put_inbox("default", "haravan", "orders", str(order["id"]), order["updated_at"])
    store.close()

    shop.serve("orders")                                # no scheduler, no new webhook

    wait_for(lambda: orders_requests(shop, order), "the order's voucher request in MISA")
    wait_for(lambda: all(row["handled_at"] for row in shop.inbox()), "inbox rows handled")
