"""A minimal OTLP/HTTP trace receiver on 127.0.0.1 that counts spans (run as its own process).

    python bench/_collector.py PORT_FILE [DELAY_SECONDS]

Writes the port it listens on to PORT_FILE; ``GET /count`` answers the spans received so far.
With DELAY_SECONDS it answers each export that much later: a collector that cannot keep up.
It decodes each request (so it costs what a collector costs) and exits when its parent does.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

_lock = threading.Lock()
_spans = 0
_delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        global _spans
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        count = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        if _delay:
            time.sleep(_delay)
        with _lock:
            _spans += count
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self) -> None:
        reply = str(_spans).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    with open(sys.argv[1], "w") as out:
        out.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
