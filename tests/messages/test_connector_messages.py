"""Connector messages a user meets in `hexaflow run`: missing or wrong settings, credentials the
system refuses, documents it rejects. Each names the variable (or the route field) to fix and
never a secret's value. Runs against the Haravan and MISA sandboxes on loopback.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from messages_kit import CREDENTIALS, LIMITED_TOKEN, hexaflow, no_secret_in

FLOWS = {
    "haravan.yaml": """\
flow: shop_orders
source: {connector: haravan, resource: orders, as: order}
routes:
  - {name: copy, target: {connector: file, document: records}, key: "R_<<order.id>>"}
""",
    "misa.yaml": """\
flow: company_stocks
source: {connector: misa, resource: stocks, as: stock, id: stock_code}
routes:
  - {name: copy, target: {connector: file, document: records}, key: "R_<<stock.stock_code>>"}
""",
    "file.yaml": """\
flow: from_file
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
routes:
  - {name: copy, target: {connector: file, document: records}, key: "R_<<order.id>>"}
""",
    "file-json.yaml": """\
flow: from_file
source: {connector: file, resource: records, params: {path: orders.json}, as: order}
routes:
  - {name: copy, target: {connector: file, document: records}, key: "R_<<order.id>>"}
""",
    "file-no-path.yaml": """\
flow: from_file
source: {connector: file, resource: records, as: order}
routes:
  - {name: copy, target: {connector: file, document: records}, key: "R_<<order.id>>"}
""",
}


@dataclass
class Case:
    id: str
    flow: str
    env: dict                       # overrides of working settings ("{misa}"/"{haravan}": a sandbox URL)
    says: tuple[str, ...]           # what is wrong, and the variable to fix
    files: dict[str, str] = field(default_factory=dict)
    limited: bool = False           # the shop whose token lacks scopes


CASES = [
    # -- Haravan ----------------------------------------------------------------------------
    Case("haravan-401", "haravan.yaml", {"HARAVAN_TOKEN": "wrong-token-value-123"},
         ("Haravan refused the credentials (HTTP 401)", "check HARAVAN_TOKEN", "HARAVAN_BASE_URL")),
    Case("haravan-403", "haravan.yaml", {"HARAVAN_TOKEN": LIMITED_TOKEN},
         ("Haravan denied access (HTTP 403)", "HARAVAN_TOKEN lacks the scope 'com.read_orders'",
          "add it to the private app's permissions"), limited=True),
    Case("haravan-token-missing", "haravan.yaml", {"HARAVAN_TOKEN": None},
         ("HARAVAN_TOKEN is not set", "put it in HARAVAN_TOKEN")),
    Case("haravan-setting-not-a-number", "haravan.yaml", {"HARAVAN_PAGE_SIZE": "many"},
         ("HARAVAN_PAGE_SIZE must be a number, got 'many'",)),
    Case("haravan-unreachable", "haravan.yaml", {"HARAVAN_BASE_URL": "http://127.0.0.1:9"},
         ("haravan: GET /orders.json still failing after 2 attempts",
          "check HARAVAN_BASE_URL (http://127.0.0.1:9)")),
    Case("haravan-url-of-another-system", "haravan.yaml", {"HARAVAN_BASE_URL": "{misa}"},
         ("haravan: GET /orders.json answered HTTP 404", "check HARAVAN_BASE_URL ({misa})")),
    # -- MISA AMIS ----------------------------------------------------------------------------
    Case("misa-app-id", "misa.yaml", {"MISA_APP_ID": "wrong-app-id-123"},
         ("MISA InvalidAppID", "Check MISA_APP_ID")),
    Case("misa-access-code", "misa.yaml", {"MISA_ACCESS_CODE": "wrong-access-code-123"},
         ("MISA InvalidAccessToken", "Check MISA_ACCESS_CODE")),
    Case("misa-company-code", "misa.yaml", {"MISA_ORG_COMPANY_CODE": "999"},
         ("MISA InvalidParam", "Check MISA_ORG_COMPANY_CODE")),
    Case("misa-not-configured", "misa.yaml", {"MISA_APP_ID": None, "MISA_ACCESS_CODE": None},
         ("MISA AMIS is not configured: set MISA_ACCESS_CODE, MISA_APP_ID",)),
    Case("misa-auth-style", "misa.yaml", {"MISA_AUTH_STYLE": "oauth"},
         ("MISA_AUTH_STYLE must be 'classic' or 'gateway', got 'oauth'",)),
    Case("misa-setting-not-a-number", "misa.yaml", {"MISA_PAGE_SIZE": "x"},
         ("MISA_PAGE_SIZE must be a whole number, got 'x'",)),
    Case("misa-url-of-another-system", "misa.yaml", {"MISA_BASE_URL": "{haravan}"},
         ("HTTP 401 on connect", "Check MISA_APP_ID", "MISA_BASE_URL ({haravan}) is MISA AMIS")),
    Case("misa-url-wrong-path", "misa.yaml", {"MISA_BASE_URL": "{misa}/not-misa"},
         ("MISA Exception", "Check MISA_BASE_URL ({misa}/not-misa)")),
    # -- the file connector ---------------------------------------------------------------------
    Case("file-missing", "file.yaml", {}, ("file connector:", "orders.jsonl does not exist",
                                          "source.params.path is relative to the flow file")),
    Case("file-bad-json-line", "file.yaml", {}, ("orders.jsonl:2: invalid JSON",),
         files={"orders.jsonl": '{"id": 1}\n{"id": 2,\n'}),
    Case("file-not-records", "file-json.yaml", {}, ("orders.json: expected a list of records",),
         files={"orders.json": "5\n"}),
    Case("file-no-path", "file-no-path.yaml", {},
         ("file connector: source.params.path is required", "relative to the flow file")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_connector_that_cannot_work_names_the_setting_to_fix(sandboxes, tmp_path, case):
    (tmp_path / case.flow).write_text(FLOWS[case.flow], encoding="utf-8")
    for name, content in case.files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    urls = {"{misa}": sandboxes.misa, "{haravan}": sandboxes.haravan}

    def fill(text):
        for mark, url in urls.items():
            text = text.replace(mark, url) if isinstance(text, str) else text
        return text
    env = sandboxes.env(**{k: fill(v) for k, v in case.env.items()})
    if case.limited:
        env["HARAVAN_BASE_URL"] = sandboxes.limited
    result = hexaflow(tmp_path, "run", case.flow, env=env)
    assert result.exit_code == 1, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, result.stderr
    for words in case.says:
        assert fill(words) in error[0], f"{fill(words)!r} not in {error[0]!r}"
    no_secret_in(result.output)
    for value in case.env.values():
        if value and "wrong" in value:
            assert value not in result.output


VOUCHERS = """\
flow: vouchers
source: {connector: file, resource: records, params: {path: orders.jsonl}, as: order}
routes:
  - name: incomplete
    target: {connector: misa, document: voucher}
    key: "BH_<<order.id>>"
    fields: {voucher_type: 13, org_refid: "msg-test-<<order.id>>", refno_finance: "MSGBH<<order.id>>"}
  - name: unkeyed
    target: {connector: misa, document: voucher}
    key: "X_<<order.id>>"
    fields: {org_refno: "<<order.id>>"}
"""


def test_documents_misa_rejects_name_the_record_route_reason_and_the_fix(sandboxes, tmp_path):
    (tmp_path / "flow.yaml").write_text(VOUCHERS, encoding="utf-8")
    (tmp_path / "orders.jsonl").write_text('{"id": 7001}\n', encoding="utf-8")
    result = hexaflow(tmp_path, "run", "flow.yaml",
                      env={**sandboxes.env(), "HEXAFLOW_SETTLE_SECONDS": "5"})
    assert result.exit_code == 2, result.output
    # refused by the connector before sending: names the fields to set
    assert ("order 7001: route unkeyed: misa rejected X_7001: InvalidParam voucher payload lacks "
            "voucher_type, org_refid; set them in the route's fields") in result.stderr
    # refused by MISA later (polled): names the flow, the record and MISA's reason
    assert ("flow vouchers, record 7001: route incomplete: misa rejected BH_7001: InvalidParam "
            "Thiếu trường bắt buộc refdate") in result.stderr, result.stderr
    assert "kept as dead letters: `hexaflow dlq list`" in result.stdout
    no_secret_in(result.output)
