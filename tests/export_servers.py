"""A fake OTLP/HTTP collector on 127.0.0.1 for the export tests: it decodes what it receives.

It answers 200 by default; ``status`` maps a path (``/v1/traces``, ``/v1/metrics``) to another
answer (503, or 405 as a traces-only backend such as Arize Phoenix gives on ``/v1/metrics``),
and ``delay_s`` holds every answer back (a slow collector).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

LOOPBACK = "127.0.0.1"


def _service(resource: Any) -> str:
    for attribute in resource.attributes:
        if attribute.key == "service.name":
            return str(attribute.value.string_value)
    return ""


@dataclass
class ReceivedSpan:
    name: str
    span_id: str
    service: str
    attributes: dict[str, Any]


@dataclass
class ReceivedPoints:
    """One metric in one export: its service and the sum of its histogram points' counts."""

    name: str
    service: str
    count: int


@dataclass
class FakeCollector:
    status: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0
    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: list[ReceivedPoints] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    headers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def record(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        self.requests[path] = self.requests.get(path, 0) + 1
        self.headers.setdefault(path, []).append(headers)
        status = self.status.get(path, 200)
        if status != 200:
            return status
        if path == "/v1/traces":
            traces = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            for resource_spans in traces.resource_spans:
                service = _service(resource_spans.resource)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: a.value for a in span.attributes}
                        self.spans.append(ReceivedSpan(span.name, span.span_id.hex(), service, attributes))
        elif path == "/v1/metrics":
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            for resource_metrics in request.resource_metrics:
                service = _service(resource_metrics.resource)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        count = sum(p.count for p in metric.histogram.data_points)
                        self.metrics.append(ReceivedPoints(metric.name, service, count))
        return 200

    def span_ids(self) -> set[str]:
        return {span.span_id for span in self.spans}


@contextmanager
def fake_collector(status: dict[str, int] | None = None, delay_s: float = 0.0) -> Iterator[FakeCollector]:
    """A running FakeCollector; stopped (and its port closed) when the block ends."""
    collector = FakeCollector(status=dict(status or {}), delay_s=delay_s)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if collector.delay_s:
                time.sleep(collector.delay_s)
            with lock:
                code = collector.record(self.path, body, {k.lower(): v for k, v in self.headers.items()})
            reply = b"" if code == 200 else b"not here"
            self.send_response(code)
            self.send_header("Content-Type", "application/x-protobuf" if code == 200 else "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    collector.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="fake-collector", daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
