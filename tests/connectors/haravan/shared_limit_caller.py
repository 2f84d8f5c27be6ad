"""One process of test_haravan_shared_limit.py: the Haravan client, configured from the
environment as a run's connector is (HARAVAN_*, and HEXAFLOW_STATE for the shared bucket),
reads ``argv[1]`` in a loop for ``argv[2]`` seconds from the line it is sent on stdin, then
prints how many answers of each status it got, as JSON."""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

from hexaflow.connectors.haravan.client import HaravanClient, HaravanSettings

SCOPES = {"/customers.json": "com.read_customers", "/products.json": "com.read_products",
          "/orders.json": "com.read_orders", "/locations.json": "com.read_shop"}


def main() -> None:
    path, seconds = sys.argv[1], float(sys.argv[2])
    client = HaravanClient(HaravanSettings.from_config(dict(os.environ)))
    print("ready", flush=True)
    sys.stdin.readline()
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _body = client.request("GET", path, scope=SCOPES[path], params={"limit": 1})
        statuses[status] += 1
    client.http.close()
    print(json.dumps({"statuses": statuses, "retries": client.http.retries}), flush=True)


if __name__ == "__main__":
    main()
