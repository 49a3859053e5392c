"""The probe's metrics in the Prometheus text format, on an optional loopback HTTP port.

The exposition format is written by ``prometheus_client`` (a maintained library; getting
escaping, ``_total`` suffixes and HELP/TYPE lines right by hand is what it exists for).
Every series of :class:`actors.metrics.Metrics` is exported under the ``probe_`` prefix,
plus the standard ``process_*`` series of the delivery process. The server listens on
127.0.0.1 only and answers ``GET /metrics``; anything else is a 404.
"""

from __future__ import annotations

import http.server
import logging
import threading
from typing import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from actors.metrics import DESCRIPTIONS, Metrics

log = logging.getLogger("probe.metrics")

PREFIX = "probe_"


class MetricsBridge:
    """A prometheus_client collector reading a :class:`Metrics` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        grouped: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] = {}
        for kind, name, labels, value in self.metrics.items():
            entry = grouped.setdefault(name, (kind, []))
            if entry[0] == kind:  # one type per name; a clash keeps the first
                entry[1].append((labels, value))
        for name in sorted(grouped):
            kind, series = grouped[name]
            label_names = sorted({k for labels, _ in series for k in labels})
            help_text = DESCRIPTIONS.get(name, name.replace("_", " "))
            family_name = PREFIX + (name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name)
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(family_name, help_text, labels=label_names)
            else:
                family = GaugeMetricFamily(family_name, help_text, labels=label_names)
            for labels, value in sorted(series, key=lambda s: sorted(s[0].items())):
                family.add_metric([labels.get(k, "") for k in label_names], float(value))
            yield family


def registry_for(metrics: Metrics) -> CollectorRegistry:
    """A registry holding the probe's metrics and the delivery process's own figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsBridge(metrics))
    ProcessCollector(registry=registry)
    return registry


def exposition(metrics: Metrics) -> str:
    """The metrics as Prometheus text (what ``GET /metrics`` returns; also for the console)."""
    return generate_latest(registry_for(metrics)).decode()


def as_dict(metrics: Metrics) -> dict[str, float]:
    """The metrics as ``{'name{label="v"}': value}`` (the console's JSON view)."""
    return metrics.snapshot()


class _Handler(http.server.BaseHTTPRequestHandler):
    registry: CollectorRegistry

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics request: " + format, *args)


class MetricsServer:
    """``GET http://127.0.0.1:PORT/metrics`` in a daemon thread; port 0 picks a free one."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1") -> None:
        handler = type("MetricsHandler", (_Handler,), {"registry": registry_for(metrics)})
        self.server = http.server.ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self.server.serve_forever, name="metrics-http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics served at %s", self.url, extra={"component": "metrics", "event": "metrics_listening"})
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

