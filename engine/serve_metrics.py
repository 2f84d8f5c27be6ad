"""``GET /metrics`` of ``hexaflow serve``: Prometheus text, every series labelled by tenant
(docs/serve.md "Metrics").

Request latency and deliveries are counted in this process; runs are the dispatcher's; the
documents by state and the open dead letters are read from the state store at each scrape
(bounded GROUP BY queries, the status page's own), so several serve processes sharing a store
report the same figures for them. Each HookServer has its own registry (tests start many).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hexaflow import statuspage_queries as queries
from hexaflow.state import open_store

if TYPE_CHECKING:
    from hexaflow.serve import HookServer

# Seconds: a delivery is a few ms; a status page render up to ~0.5 s with 100k documents.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeMetrics:
    def __init__(self, hooks: "HookServer"):
        self.hooks = hooks
        self.registry = CollectorRegistry()     # no collect() at registration: no store read
        self._latency = Histogram("hexaflow_http_request_duration_seconds",
                                  "Time to answer an HTTP request, by route",
                                  ["tenant", "route"], buckets=LATENCY_BUCKETS,
                                  registry=self.registry)
        self._deliveries = Counter("hexaflow_deliveries", "Webhook and callback deliveries "
                                   "answered, by connector and HTTP status",
                                   ["tenant", "connector", "status"], registry=self.registry)
        self.registry.register(_StoreCollector(hooks))

    def _label(self, tenant: str | None) -> str:
        # Only tenants this serve holds become labels: a path naming others must not make one.
        return tenant if tenant in self.hooks.tenants else self.hooks.tenant

    def observe(self, route: str, seconds: float, tenant: str | None = None) -> None:
        self._latency.labels(self._label(tenant), route).observe(seconds)

    def delivery(self, connector: str, status: int, tenant: str | None = None) -> None:
        self._deliveries.labels(self._label(tenant), connector, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StoreCollector(Collector):
    """Runs (the dispatcher's counts), documents by state, open dead letters (the store's)."""

    def __init__(self, hooks: "HookServer"):
        self.hooks = hooks

    def collect(self) -> Iterable[Metric]:
        tenants = self.hooks.tenant_names()
        runs = CounterMetricFamily("hexaflow_runs", "Runs of a flow finished by this serve "
                                   "process, by outcome (ok, failed, locked: run elsewhere)",
                                   labels=["tenant", "flow", "outcome"])
        for (run_tenant, flow, outcome), n in sorted(self.hooks.dispatcher.run_counts().items()):
            runs.add_metric([run_tenant, flow, outcome], n)
        yield runs
        pending = GaugeMetricFamily("hexaflow_runs_pending", "Runs asked for and not started",
                                    labels=["tenant"])
        waiting = [tenant for tenant, _flow in self.hooks.dispatcher.pending()]
        for tenant in tenants:
            pending.add_metric([tenant], waiting.count(tenant))
        yield pending
        documents = GaugeMetricFamily("hexaflow_documents", "Documents in the ledger, by flow and "
                                      "state", labels=["tenant", "flow", "state"])
        letters = GaugeMetricFamily("hexaflow_dead_letters_open", "Open dead letters, by flow",
                                    labels=["tenant", "flow"])
        store = open_store(self.hooks.state)
        try:
            store.make_read_only()
            for tenant in tenants:
                for flow, state, n in sorted(queries.document_counts(store, tenant)):
                    documents.add_metric([tenant, flow, state], n)
                for flow, n in sorted(queries.open_dead_letter_counts(store, tenant).items()):
                    letters.add_metric([tenant, flow], n)
        finally:
            store.close()
        yield documents
        yield letters
