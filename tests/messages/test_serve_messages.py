"""`hexaflow serve`: what stops it at start, what a refused delivery is told, what the log says
when a run fails. Each names the path, flow or setting to fix, and never a secret's value.

Forged Haravan webhooks and MISA callbacks (401, nothing stored) are pinned by tests/serve/;
here every other answer body is checked, and each request uses a fresh connection.
"""
from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from hexaflow.connectors.haravan.webhooks import sign
from hexaflow.connectors.misa.callbacks import build_callback, sign as misa_sign
from hexaflow.runner import load_plan
from hexaflow.state import open_store
from hexaflow.serve import MAX_BODY, HookServer, serve_command

from messages_kit import CREDENTIALS, no_secret_in

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
FILE_FLOW = """\
flow: {name}
source: {{connector: file, resource: records, params: {{path: orders.jsonl}}}}
routes:
  - {{name: copy, target: {{connector: file, document: records}}, key: "R_<<record.id>>"}}
"""
OFFLINE = {**CREDENTIALS, "HARAVAN_BASE_URL": "http://127.0.0.1:9", "MISA_BASE_URL": "http://127.0.0.1:9"}


def serve_in_thread(paths: list[str], **kwargs) -> tuple[int, str]:
    """serve_command on a worker thread (so it installs no signal handler), told to stop at once
    should it start; returns (exit code, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    stop = threading.Event()
    stop.set()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["code"] = serve_command(paths, host="127.0.0.1", port=kwargs.pop("port", 0),
                                            interval=0, out=out, err=err, stop=stop, **kwargs)
        except Exception as exc:          # reported as the failure it is
            outcome["code"] = f"{type(exc).__name__}: {exc}"
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "serve did not return"
    return outcome["code"], err.getvalue()


# -- serve does not start ---------------------------------------------------------------------
@dataclass
class Start:
    id: str
    paths: list[str]                  # relative to the test folder; "mappings/x" = a packaged flow
    env: dict
    says: tuple[str, ...]
    files: dict[str, str] = field(default_factory=dict)


STARTS = [
    Start("path-missing", ["nowhere"], {}, ("nowhere:1:1: error: no such file or folder",
                                            "give flow files or folders", "error: cannot serve: fix the paths above")),
    Start("no-flow-in-folder", ["empty"], {}, ("error: no flow files found in", "empty",
                                               "a flow file is YAML with `flow:`, `source:` and `routes:`")),
    Start("state-in-memory", ["a"], {"HEXAFLOW_STATE": ":memory:"},
          ("needs a state file, not :memory:", "set HEXAFLOW_STATE or --state to a file path")),
    Start("flow-not-valid", ["bad.yaml"], {}, ("bad.yaml:4:15: error: unknown key 'wen' in routes[0]",
                                               "run `hexaflow validate", "bad.yaml`"),
          files={"bad.yaml": "flow: bad\nsource: {connector: file, resource: records}\nroutes:\n"
                             "  - {name: r, wen: x, target: {connector: file, document: records}, key: 'K_<<record.id>>'}\n"}),
    Start("flow-name-twice", ["a", "b"], {}, ("flow names must be unique; given twice: same",
                                              "a/f.yaml", "b/f.yaml", "rename one (its `flow:` key)")),
    Start("haravan-token-missing", ["mappings/orders.yaml"], {"HARAVAN_TOKEN": None},
          ("error: HARAVAN_TOKEN is not set", "put it in HARAVAN_TOKEN")),
    Start("misa-not-configured", ["mappings/orders.yaml"],
          {"MISA_APP_ID": None, "MISA_ACCESS_CODE": None, "MISA_ORG_COMPANY_CODE": None},
          ("error: MISA AMIS is not configured: set MISA_ACCESS_CODE, MISA_ORG_COMPANY_CODE, MISA_APP_ID",)),
]


@pytest.mark.parametrize("start", STARTS, ids=[s.id for s in STARTS])
def test_serve_that_cannot_start_names_the_path_or_setting_to_fix(tmp_path, monkeypatch, start):
    (tmp_path / "empty").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "f.yaml").write_text(FILE_FLOW.format(name="same"))
    for name, content in start.files.items():
        (tmp_path / name).write_text(content)
    env = {**OFFLINE, "HEXAFLOW_STATE": str(tmp_path / "state.db"), **start.env}
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    paths = [str(MAPPINGS / p.split("/", 1)[1]) if p.startswith("mappings/") else p for p in start.paths]
    code, err = serve_in_thread(paths)
    assert code == 1, err
    for words in start.says:
        assert words in err, f"{words!r} not in {err!r}"
    no_secret_in(err)


def test_a_port_in_use_names_the_address_and_the_option_to_change(tmp_path, monkeypatch):
    (tmp_path / "f.yaml").write_text(FILE_FLOW.format(name="copy"))
    monkeypatch.setenv("HEXAFLOW_STATE", str(tmp_path / "state.db"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, err = serve_in_thread([str(tmp_path / "f.yaml")], port=port)
    assert code == 1, err
    assert f"error: cannot listen on 127.0.0.1:{port}: the port is already in use" in err, err
    assert "choose another port with --port (0: any free port)" in err, err
    assert "Errno" not in err


@pytest.mark.parametrize("state, says", [
    ("mysql://db/hexaflow",
     "error: HEXAFLOW_STATE=mysql://…: not a state store; use a file path, sqlite:///path or postgresql://user@host/database"),
    ("mysql://hexa:s3cret-pw@db/hexaflow", "error: HEXAFLOW_STATE=mysql://…: not a state store"),
    ("postgresql://hexa:s3cret-pw@127.0.0.1:1/hexaflow",
     "error: HEXAFLOW_STATE=postgresql://hexa@127.0.0.1:1/hexaflow: the PostgreSQL state store failed"),
    ("<folder>/f.yaml/state.db", "f.yaml is a file, not a folder"),
], ids=["url", "url-with-password", "server-unreachable", "under-a-file"])
def test_a_state_setting_that_cannot_be_opened_is_an_error_line(tmp_path, monkeypatch, state, says):
    (tmp_path / "f.yaml").write_text(FILE_FLOW.format(name="copy"))
    monkeypatch.setenv("HEXAFLOW_STATE", state.replace("<folder>", str(tmp_path)))
    code, err = serve_in_thread([str(tmp_path / "f.yaml")])
    assert code == 1, err
    assert says in err and "s3cret-pw" not in err, err


# -- deliveries that are refused ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    """serve with the orders flow and settings that reach nothing (no delivery here is valid
    enough to ask for a run)."""
    state = tmp_path_factory.mktemp("serve") / "state.db"
    server = HookServer.single([load_plan(MAPPINGS / "orders.yaml")], tenant="default", config=OFFLINE,
                        state=str(state), port=0).start()
    yield server
    server.stop(timeout=10)


def _signed(raw: bytes, topic: str = "orders/create") -> dict:
    return {"X-Haravan-Topic": topic, "X-Haravan-Hmacsha256": sign(raw, CREDENTIALS["HARAVAN_WEBHOOK_SECRET"])}


def _callback(**changes) -> bytes:
    body = build_callback(1, [{"org_refid": "x", "success": True}], app_id=CREDENTIALS["MISA_APP_ID"],
                          org_company_code=CREDENTIALS["MISA_ORG_COMPANY_CODE"],
                          key=CREDENTIALS["MISA_APP_ID"])
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v != "<absent>"}).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@dataclass
class Hook:
    id: str
    method: str
    path: str
    body: bytes
    headers: dict
    status: int
    says: tuple[str, ...]


HOOKS = [
    Hook("get-unknown-path", "GET", "/nope", b"", {}, 404, ("not found", "GET /health", "POST /hooks/<connector>")),
    Hook("post-unknown-path", "POST", "/nope", b"{}", {}, 404, ("not found", "POST /hooks/<connector>")),
    Hook("no-receiver", "POST", "/hooks/shopify", b"{}", {}, 404,
         ("no receiver for 'shopify'", "known: ['haravan', 'misa']")),
    Hook("haravan-not-json", "POST", "/hooks/haravan", b"not json", _signed(b"not json"), 400,
         ("webhook body is not JSON",)),
    Hook("misa-not-json", "POST", "/hooks/misa", b"nope", {}, 400, ("callback body is not JSON",)),
    Hook("misa-not-an-object", "POST", "/hooks/misa", b"[1]", {}, 400, ("callback body is not a JSON object",)),
    Hook("misa-no-data", "POST", "/hooks/misa", _callback(data="<absent>"), {}, 400,
         ("callback has no 'data' string to verify",)),
    Hook("misa-no-signature", "POST", "/hooks/misa", _callback(signature="<absent>"), {}, 401,
         ("callback has no signature", "MISA_CALLBACK_KEY", "MISA_APP_ID")),
    Hook("misa-signature-wrong", "POST", "/hooks/misa", _callback(signature="0" * 64), {}, 401,
         ("callback signature does not match", "check MISA_CALLBACK_KEY", "the key is MISA_APP_ID")),
    Hook("misa-no-data-type", "POST", "/hooks/misa", _callback(data_type="x"), {}, 400,
         ("callback has no numeric data_type",)),
    Hook("misa-other-app", "POST", "/hooks/misa", _callback(app_id="another-app"), {}, 400,
         ("callback is for another application: its app_id is not MISA_APP_ID; nothing was applied",
          "check MISA_APP_ID and the callback URL registered with MISA")),
    Hook("misa-other-company", "POST", "/hooks/misa", _callback(org_company_code="0399999999"), {}, 400,
         ("callback is for another company: its org_company_code is not MISA_ORG_COMPANY_CODE",
          "check MISA_ORG_COMPANY_CODE and the callback URL registered with MISA")),
    # Signed, so verified before it is read: json.loads gives up (RecursionError) at 100,000
    # levels; 500 levels parse, and normalising them recursed as deep.
    Hook("haravan-nested-100000-deep", "POST", "/hooks/haravan", _nested(100_000).encode(),
         _signed(_nested(100_000).encode()), 400, ("webhook body refused", "nests too deeply")),
    Hook("haravan-nested-500-deep", "POST", "/hooks/haravan",
         f'{{"id": 1, "note": {_nested(500)}}}'.encode(),
         _signed(f'{{"id": 1, "note": {_nested(500)}}}'.encode()), 400,
         ("webhook body refused", "nests more than 64 levels deep")),
    Hook("misa-body-nested-100000-deep", "POST", "/hooks/misa", _nested(100_000).encode(), {}, 400,
         ("callback body refused", "nests too deeply")),
    Hook("misa-data-nested-100000-deep", "POST", "/hooks/misa",
         _callback(data=_nested(100_000), signature=misa_sign(_nested(100_000),
                                                              CREDENTIALS["MISA_APP_ID"])),
         {}, 400, ("callback 'data' refused", "nests too deeply")),
]


@pytest.mark.parametrize("hook", HOOKS, ids=[h.id for h in HOOKS])
def test_a_refused_delivery_is_told_why(hooks, hook, caplog):
    with caplog.at_level(logging.WARNING, logger="hexaflow.serve"):
        answer = httpx.request(hook.method, hooks.url + hook.path, content=hook.body or None,
                               headers=hook.headers, timeout=10)
    assert answer.status_code == hook.status, answer.text
    text = json.dumps(answer.json(), ensure_ascii=False)
    for words in hook.says:
        assert words in text, f"{words!r} not in {text!r}"
    no_secret_in(answer.text)
    if hook.path.startswith("/hooks/") and hook.path != "/hooks/shopify":
        # serve's own log says which delivery it refused, and why
        logged = [r.getMessage() for r in caplog.records if "refused a" in r.getMessage()]
        assert logged and f"(HTTP {hook.status})" in logged[-1] and hook.says[0] in logged[-1], logged
        no_secret_in(" ".join(logged))
    assert hooks.dispatcher.pending() == []


def _raw_post(url: str, head: str) -> tuple[int, dict]:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(f"POST /hooks/misa HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("head, status, says", [
    ("Transfer-Encoding: chunked\r\n", 411, "Content-Length required"),
    ("Content-Length: 99999999\r\n", 413, "body larger than 5242880 bytes"),
])
def test_a_delivery_without_a_usable_length_is_told_why(hooks, head, status, says):
    got, body = _raw_post(hooks.url, head)
    assert got == status and says in body["error"], body


def test_a_refusal_before_the_body_is_read_does_not_garble_the_next_request(hooks):
    """A 404 answers before the body is needed: the body is read and dropped, so the next
    request on the same kept-alive connection is read as a request (it was a 501
    "Unsupported method ('{}POST')" when the body was left in the connection)."""
    seen: set = set()
    with httpx.Client(timeout=10) as client:
        for _ in range(2):
            first = client.post(hooks.url + "/nope", content=b'{"a": 1}')
            assert first.status_code == 404 and "not found" in first.json()["error"], first.text
            assert first.headers.get("connection") != "close"
            seen.add(id(first.extensions["network_stream"]))
            second = client.get(hooks.url + "/health")
            assert second.status_code == 200 and second.json()["ok"] is True, second.text
            seen.add(id(second.extensions["network_stream"]))
    assert len(seen) == 1, "the requests did not share one connection"


def test_requests_pipelined_after_a_refusal_on_one_socket_are_each_answered(hooks):
    parts = urlsplit(hooks.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
                     b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                     b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"404", b"404", b"200"], data


@pytest.mark.parametrize("head, status", [
    ("Transfer-Encoding: chunked\r\n", 411),
    (f"Content-Length: {MAX_BODY + 1}\r\n", 413),
])
def test_a_body_that_cannot_be_skipped_ends_the_connection_and_says_so(hooks, head, status):
    parts = urlsplit(hooks.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(f"POST /hooks/misa HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):      # the server closes: recv ends
            data += chunk
    head_lines = data.split(b"\r\n\r\n", 1)[0].lower()
    assert head_lines.startswith(f"http/1.1 {status}".encode()) and b"connection: close" in head_lines, data


def test_a_refused_delivery_whose_body_was_read_keeps_the_connection(hooks):
    with httpx.Client(timeout=10) as client:
        first = client.post(hooks.url + "/hooks/misa", content=b"nope")
        assert first.status_code == 400 and first.headers.get("connection") != "close"
        assert client.get(hooks.url + "/health").status_code == 200


# -- a run that fails in serve -----------------------------------------------------------------------
def test_a_run_refused_by_a_connector_is_logged_with_the_fix_and_retried(sandboxes, tmp_path, caplog):
    config = {**sandboxes.env(HARAVAN_TOKEN="wrong-token-for-serve")}
    # A shop that has run before (a new, empty store against a company that holds documents
    # of this app would be refused first, as a lost state store: tests/flows/test_lost_state).
    store = open_store(str(tmp_path / "state.db"))
    store.finish_run(store.start_run("default", "orders"), "ok", {})
    store.close()
    server = HookServer.single([load_plan(MAPPINGS / "orders.yaml")], tenant="default", config=config,
                        state=str(tmp_path / "state.db"), port=0)
    with caplog.at_level(logging.INFO, logger="hexaflow.serve"):
        server.start()
        try:
            server.dispatcher.request("default", "orders")
            deadline = time.monotonic() + 15
            logged: list[str] = []
            while not logged and time.monotonic() < deadline:
                logged = [r.getMessage() for r in caplog.records if "serve: flow orders:" in r.getMessage()]
                time.sleep(0.05)
        finally:
            server.stop(timeout=15)
    assert logged, "no log line for the failed run"
    assert "Haravan refused the credentials (HTTP 401)" in logged[0] and "HARAVAN_TOKEN" in logged[0]
    assert "trying again in 5 s" in logged[0]
    assert "wrong-token-for-serve" not in logged[0]
    no_secret_in(logged[0])
