"""The orders job without hexaflow: a plain, sequential httpx script, as the baseline of
``bench/e2e.py --limits off``.

    HARAVAN_TOKEN=... MISA_APP_ID=... MISA_ACCESS_CODE=... MISA_ORG_COMPANY_CODE=... \\
    python bench/plain_httpx.py --haravan-url URL --misa-url URL

Does what ``hexaflow run mappings/orders.yaml`` does on a first run, and nothing else:

- reads every order from Haravan with httpx the way the connector does (``status=any``,
  ``order=updated_at asc``, 50 a page, each next request restarting at the last ``updated_at``
  seen, the boundary record dropped the second time), JSON parsed with Decimal money and
  normalised with the connector's own rules (``connectors/haravan/normalise.py``: the mapping
  expects orders in that shape);
- maps each order with ``bench/orders_by_hand.py`` (the flow written by hand);
- writes the documents to MISA with httpx: connect once, then ``save`` calls of at most 100
  vouchers, each customer riding once (in the first batch that needs it) in the same body, the
  envelope ``MisaConnector`` sends (``app_id``, ``org_company_code``, ``voucher``,
  ``dictionary``).

Sequential, no threads, no state store, no retries, no rate limiter (the bench runs it against
the sandbox with its rate limit off). Prints one JSON line: orders, documents, calls, seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from hexaflow.connectors.haravan.normalise import loads, normalise, normalise_timestamp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import orders_by_hand  # noqa: E402  (next to this script)

ROOT = Path(__file__).resolve().parents[1]
PAGE_SIZE = 50          # what the connector asks (and Haravan's cap on orders)
SAVE_BATCH = 100        # vouchers per MISA save call, as MISA_SAVE_BATCH's default
TIMEOUT_S = 60.0


def read_orders(http: httpx.Client, base_url: str, token: str):
    """Yield pages of normalised orders, walking by updated_at like the connector."""
    query: dict[str, Any] = {"status": "any", "order": "updated_at asc", "limit": PAGE_SIZE,
                             "page": 1}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    boundary: set[tuple[Any, Any]] = set()      # keys read at the current window's start
    reads = 0
    while True:
        response = http.get(f"{base_url}/com/orders.json", params=query, headers=headers)
        response.raise_for_status()
        reads += 1
        raw = loads(response.content)["orders"]
        fresh = [r for r in raw if (r["id"], r["updated_at"]) not in boundary]
        if fresh:
            yield [normalise(r) for r in fresh], reads
        if len(raw) < PAGE_SIZE:
            return
        last = raw[-1]["updated_at"]
        if last == query.get("updated_at_min"):
            query["page"] += 1                  # a tie group longer than a page
            boundary |= {(r["id"], r["updated_at"]) for r in raw}
            continue
        query.update(updated_at_min=last, page=1)
        # Records stamped at the new window's start come back once more: drop them then.
        instant = normalise_timestamp(last)
        boundary = {(r["id"], r["updated_at"]) for r in raw
                    if normalise_timestamp(r["updated_at"]) == instant}


class MisaWriter:
    """MISA's classic gateway: one token, save calls of <= 100 vouchers with customers riding."""

    def __init__(self, http: httpx.Client, base_url: str, app_id: str, access_code: str,
                 company: str):
        self.http, self.base_url = http, base_url.rstrip("/")
        self.app_id, self.company = app_id, company
        answer = http.post(f"{self.base_url}/api/oauth/actopen/connect", json={
            "app_id": app_id, "access_code": access_code, "org_company_code": company}).json()
        if not answer.get("Success"):
            raise SystemExit(f"MISA connect refused: {answer.get('ErrorCode')}")
        self.token = json.loads(answer["Data"])["access_token"]
        self.vouchers: list[dict[str, Any]] = []
        self.dictionary: list[dict[str, Any]] = []
        self.customers_sent: set[str] = set()
        self.calls = 0
        self.written = {"vouchers": 0, "dictionary": 0}

    def add(self, document: dict[str, Any]) -> None:
        if document["target"] == "misa/dictionary":
            code = document["key"]
            if code not in self.customers_sent:     # once per run, like the engine's ensure
                self.customers_sent.add(code)
                self.dictionary.append(document["payload"])
            return
        self.vouchers.append(document["payload"])
        if len(self.vouchers) >= SAVE_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.vouchers and not self.dictionary:
            return
        body = {"app_id": self.app_id, "org_company_code": self.company,
                "voucher": self.vouchers, "dictionary": self.dictionary}
        response = self.http.post(f"{self.base_url}/apir/sync/actopen/save", json=body,
                                  headers={"X-MISA-AccessToken": self.token})
        response.raise_for_status()
        answer = response.json()
        if not answer.get("Success"):
            raise SystemExit(f"MISA save refused: {answer.get('ErrorCode')} "
                             f"{answer.get('ErrorMessage')}")
        self.calls += 1
        self.written["vouchers"] += len(self.vouchers)
        self.written["dictionary"] += len(self.dictionary)
        self.vouchers, self.dictionary = [], []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--haravan-url", default=os.environ.get("HARAVAN_BASE_URL"))
    parser.add_argument("--misa-url", default=os.environ.get("MISA_BASE_URL"))
    parser.add_argument("--mappings", default=str(ROOT / "mappings"))
    args = parser.parse_args()
    if not args.haravan_url or not args.misa_url:
        parser.error("--haravan-url and --misa-url (or HARAVAN_BASE_URL, MISA_BASE_URL) are needed")
    started = time.perf_counter()
    tables = orders_by_hand.load_tables(Path(args.mappings))
    orders = reads = 0
    with httpx.Client(timeout=TIMEOUT_S) as http:
        misa = MisaWriter(http, args.misa_url, os.environ["MISA_APP_ID"],
                          os.environ["MISA_ACCESS_CODE"], os.environ["MISA_ORG_COMPANY_CODE"])
        for page, reads in read_orders(http, args.haravan_url.rstrip("/"),
                                       os.environ["HARAVAN_TOKEN"]):
            for order in page:
                orders += 1
                for document in orders_by_hand.map_order(order, tables):
                    misa.add(document)
        misa.flush()
    print(json.dumps({"orders": orders, "page_reads": reads, **misa.written,
                      "documents": sum(misa.written.values()), "save_calls": misa.calls,
                      "seconds": round(time.perf_counter() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
