"""Run N Haravan + MISA sandbox pairs (one shop and its company each, own credentials) in this
process, print them as one JSON line, and serve until stdin closes or SIGTERM. The worker
chaos test starts it as a separate process, so that the shops outlive the killed workers.

    python many_sandboxes.py N ORDERS
"""
from __future__ import annotations

import json
import signal
import sys
import threading

from hexaflow.connectors.commands import start_sandboxes


def credentials(n: int) -> dict[str, str]:
    return {"HARAVAN_TOKEN": f"chaos-token-{n:02d}-0123456789",
            "HARAVAN_WEBHOOK_SECRET": f"chaos-hook-{n:02d}",
            "MISA_APP_ID": "chaos-partner-app", "MISA_ACCESS_CODE": f"chaos-access-{n:02d}",
            "MISA_ORG_COMPANY_CODE": f"03{n:08d}"}


def main() -> None:
    count, orders = int(sys.argv[1]), int(sys.argv[2])
    shops, servers = [], []
    for n in range(count):
        haravan, misa, creds = start_sandboxes(data="demo", orders=orders, rate_limit=True,
                                               credentials=credentials(n))
        servers += [haravan, misa]
        shops.append({"haravan": haravan.url, "misa": misa.url, "credentials": creds})
    print(json.dumps(shops), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    for server in servers:
        server.stop()


if __name__ == "__main__":
    main()
