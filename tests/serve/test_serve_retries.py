"""After a failed run, serve does what its log line says: "trying again in N s" means no run of
that flow before N seconds, whoever asks for one meanwhile (here the scheduler, ten times a
second), and a run soon after."""
from __future__ import annotations

import logging
import re

import pytest

from hexaflow import dispatch

from serve_kit import wait_for

FAILED = re.compile(r"^serve: flow orders: .*; trying again in (\d+) s$", re.DOTALL)
SLACK_S = 10.0     # how late a retry may start on a loaded machine


def _failures(caplog: pytest.LogCaptureFixture) -> list[tuple[float, int]]:
    """(when, the delay announced) of each failed run of the orders flow logged so far."""
    found = []
    for record in list(caplog.records):       # the dispatcher's thread keeps logging
        said = FAILED.match(record.getMessage())
        if said:
            found.append((record.created, int(said.group(1))))
    return found


def test_a_failed_run_is_tried_again_after_the_delay_its_log_line_announces(shop, monkeypatch,
                                                                            caplog):
    monkeypatch.setattr(dispatch, "RETRY_FAILED_S", 1.0)     # 1 s, 2 s, 4 s: a short test
    shop.config["HARAVAN_TOKEN"] = "not-the-shop-token"       # every run fails at its first read
    with caplog.at_level(logging.INFO, logger="hexaflow.serve"):
        shop.serve("orders", interval=0.1)
        failures = wait_for(lambda: _failures(caplog)[:3] if len(_failures(caplog)) >= 3 else None,
                            "three failed runs", timeout=30)
    assert [said for _, said in failures] == [1, 2, 4], failures
    for (at, said), (next_at, _) in zip(failures, failures[1:]):
        # The next failure is logged after a run that started no earlier than announced.
        assert said <= next_at - at < said + SLACK_S, failures
