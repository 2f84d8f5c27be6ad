"""The rate limit shared through a PostgreSQL state store (hexaflow.ratelimit_pg): limiters on
one store keep one bucket, by RateLimiter's rule; a failing store never holds a call up.
The four-process test against the Haravan sandbox is tests/connectors/haravan/test_haravan_shared_limit.py."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from hexaflow import ratelimit_pg
from hexaflow.http import RateLimiter, rate_limiter
from hexaflow.ratelimit_pg import SharedRateLimiter
from hexaflow.state import open_store
from state_backends import make_target


@pytest.fixture
def store_url(request, tmp_path):
    target = make_target("postgresql", tmp_path, request)
    open_store(str(target)).close()           # migrated before any timing starts
    request.addfinalizer(lambda: ratelimit_pg.close_sessions(str(target)))
    return str(target)


def shared(url: str, capacity: int, rate: float, *, account: str = "shop-1", headroom: int = 0,
           start_full: bool = False) -> SharedRateLimiter:
    local = RateLimiter(capacity, rate, headroom=headroom, start_full=start_full)
    return SharedRateLimiter(url, "sys", account, local, start_full=start_full)


def bucket_row(url: str, account: str = "shop-1") -> dict:
    import psycopg
    from psycopg.rows import dict_row
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute("SELECT level, stamp, capacity, guessing, blocked_until, "
                           "extract(epoch FROM clock_timestamp())::float8 AS now FROM rate_limits "
                           "WHERE system = 'sys' AND account = %s", (account,)).fetchone()
    assert row is not None
    return row


def test_two_limiters_on_one_store_grant_no_more_than_one_bucket(store_url):
    # 10 calls, draining 20/s: over ~2 s one bucket allows 10 + 20·t; two in-process buckets
    # would allow twice that.
    limiters = [shared(store_url, 10, 20.0), shared(store_url, 10, 20.0)]
    granted: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + 2.0

    def hammer(limiter: SharedRateLimiter) -> None:
        while time.monotonic() < deadline:
            limiter.acquire()
            with lock:
                granted.append(time.monotonic())

    threads = [threading.Thread(target=hammer, args=(lim,)) for lim in limiters for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    span = max(granted) - started
    bound = 10 + 20.0 * span
    # The span is read on this clock after each grant returns; the server granted a moment
    # earlier, so the bound may lag by the one token in flight.
    assert len(granted) <= bound + 1, (len(granted), bound)
    assert len(granted) >= 0.8 * bound, (len(granted), bound)     # and the bucket is used
    # Neither limiter's own in-process bucket was touched: every token came from the store.
    assert all(lim.local._level == 0 for lim in limiters)


def test_a_penalty_on_one_holds_the_other_back_for_the_whole_retry_after(store_url):
    first, second = shared(store_url, 10, 20.0), shared(store_url, 10, 20.0)
    first.acquire()
    before = time.monotonic()
    first.penalise(1.0)
    second.acquire()
    assert time.monotonic() - before >= 1.0
    row = bucket_row(store_url)
    assert row["blocked_until"] <= row["now"]


def test_observe_raises_the_level_to_the_servers_count_but_never_below_what_others_took(store_url):
    taker, watcher = shared(store_url, 10, 0.1), shared(store_url, 10, 0.1)
    for _ in range(6):
        taker.acquire()
    watcher.observe(2, 10)               # an answer sent before most of those calls
    assert bucket_row(store_url)["level"] > 5.9
    watcher.observe(9, 12)               # another client used the shop too: the server knows
    row = bucket_row(store_url)
    assert 8.9 < row["level"] <= 9 and row["capacity"] == 12


def test_start_full_is_the_first_process_guess_and_the_first_count_replaces_it(store_url):
    first = shared(store_url, 10, 4.0, headroom=2, start_full=True)
    before = time.monotonic()
    first.acquire()                      # the row starts at 8 of 10: one leak interval
    assert time.monotonic() - before >= 0.25 - 0.01
    assert bucket_row(store_url)["guessing"]
    first.observe(1, 10)                 # the server's first count, lower than the guess
    row = bucket_row(store_url)
    assert not row["guessing"] and row["level"] == 1
    # A process that comes later finds the store's count (1, draining), not a new guess of 8.
    later = shared(store_url, 10, 4.0, headroom=2, start_full=True)
    later.acquire()
    row = bucket_row(store_url)
    assert not row["guessing"] and 1 <= row["level"] <= 2


def test_the_store_is_chosen_by_hexaflow_state(store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HEXAFLOW_STATE", store_url)
    limiter = rate_limiter("sys", "chosen", 10, 5.0)
    assert isinstance(limiter, SharedRateLimiter)
    assert rate_limiter("sys", "chosen", 10, 5.0) is limiter       # one per process
    monkeypatch.setenv("HEXAFLOW_STATE", str(tmp_path / "state.db"))
    assert isinstance(rate_limiter("sys", "chosen", 10, 5.0), RateLimiter)
    monkeypatch.delenv("HEXAFLOW_STATE")
    assert isinstance(rate_limiter("sys", "chosen", 10, 5.0), RateLimiter)


def test_an_unreachable_store_falls_back_to_the_process_bucket_with_one_warning(caplog):
    # A closed loopback port: every connection is refused at once.
    url = "postgresql://hexaflow:hunter2@127.0.0.1:9/none"
    limiter = shared(url, 10, 20.0)
    try:
        with caplog.at_level(logging.INFO, logger="hexaflow.http"):
            before = time.monotonic()
            for _ in range(12):
                limiter.acquire()
                limiter.observe(1, 10)
            elapsed = time.monotonic() - before
    finally:
        ratelimit_pg.close_sessions(url)
    # 10 at once, then the process's own bucket paces the other two at 20/s.
    assert 0.1 - 0.01 <= elapsed < 2.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "paces its own calls" in warnings[0]
    assert "hunter2" not in caplog.text


def test_a_store_that_stops_answering_holds_a_call_no_longer_than_the_statement_timeout(
        store_url, monkeypatch, caplog):
    import psycopg
    monkeypatch.setattr(ratelimit_pg, "STATEMENT_TIMEOUT_MS", 300)
    monkeypatch.setattr(ratelimit_pg, "RETRY_STORE_S", 0.3)
    limiter = shared(store_url, 10, 20.0)
    limiter.acquire()                    # the row exists; the session is made with the timeout
    with psycopg.connect(store_url) as blocker, caplog.at_level(logging.INFO, logger="hexaflow.http"):
        blocker.execute("SELECT 1 FROM rate_limits FOR UPDATE")     # held until rollback
        before = time.monotonic()
        limiter.acquire()                # waits on the row lock, cancelled, then the fallback
        held = time.monotonic() - before
        limiter.acquire()                # inside RETRY_STORE_S: the fallback without asking
        assert time.monotonic() - before - held < 0.2
        blocker.rollback()
        time.sleep(0.35)
        taken_before = bucket_row(store_url)["stamp"]
        limiter.acquire()                # the store again
    assert 0.25 <= held < 1.5
    assert bucket_row(store_url)["stamp"] > taken_before
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [m for level, m in messages if level == logging.WARNING] == [
        m for level, m in messages if "paces its own calls" in m]
    assert sum(level == logging.WARNING for level, _ in messages) == 1
    assert any("answer again" in m for _, m in messages)
