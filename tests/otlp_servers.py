"""Real servers on 127.0.0.1 for the OTLP tests: bad collectors, rotel, and Arize Phoenix.

The bad collectors are a closed port, an HTTP server answering 503, a gRPC server answering
UNAVAILABLE, and a blackhole that accepts connections and never answers. rotel (a real OTLP
collector) and Phoenix come from ``.venv-phoenix``, which ``make`` builds; every process started
here is stopped by its owner, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
TOOLS_VENV = Path(os.environ.get("STEPTRACE_PHOENIX_VENV") or ROOT / ".venv-phoenix")

T = TypeVar("T")


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Poll ``predicate`` every 50 ms until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


# --- bad collectors ------------------------------------------------------------------------------


class Blackhole:
    """Accepts TCP connections on 127.0.0.1 and never reads or answers."""

    def __init__(self, port: int = 0) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, port))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.connections:
            conn.close()
        self._listener.close()


class RefusingHttpServer:
    """An OTLP/HTTP endpoint on 127.0.0.1 that answers every POST with ``status``."""

    def __init__(self, status: int = 503, port: int = 0) -> None:
        owner = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.requests += 1
                body = b"collector overloaded"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Unavailable(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, owner: RefusingGrpcServer) -> None:
        self.owner = owner

    def Export(  # the gRPC method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.owner.requests += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "collector overloaded")


class RefusingGrpcServer:
    """An OTLP/gRPC trace endpoint on 127.0.0.1 that answers every export UNAVAILABLE."""

    def __init__(self) -> None:
        self.requests = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Unavailable(self), self._server)
        self.port = self._server.add_insecure_port(f"{LOOPBACK}:0")
        self._server.start()

    def close(self) -> None:
        self._server.stop(grace=None).wait(5)


# --- rotel, a real OTLP collector -----------------------------------------------------------------


def tools_python() -> Path:
    python = TOOLS_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"{TOOLS_VENV} is missing: `make test` builds it (`make .venv-phoenix/.stamp`), "
            "or point STEPTRACE_PHOENIX_VENV at a venv with arize-phoenix and rotel"
        )
    return python


def rotel_binary() -> Path:
    tools_python()
    found = sorted(TOOLS_VENV.glob("lib/python*/site-packages/rotel/rotel-agent"))
    if not found:
        pytest.fail(f"rotel is not installed in {TOOLS_VENV}: rerun `make .venv-phoenix/.stamp`")
    return found[0]


_FIELD = re.compile(r"^\s*(ID|Name|Parent ID|Trace ID)\s*:\s*(\S*)\s*$")
_ATTRIBUTE = re.compile(r"^\s*-> ([^:]+): (\w+)\((.*)\)\s*$")
_DESCRIPTOR_NAME = re.compile(r"^\s*-> Name: (\S+)\s*$")


class Rotel:
    """rotel with its debug exporter: receives OTLP on 127.0.0.1 and prints what it got.

    The printout follows the OpenTelemetry Collector's ``debug`` exporter (detailed); the
    parsers below read spans and metric data points back from it.
    """

    def __init__(self, workdir: Path, *, grpc_port: int, http_port: int, signal_: str) -> None:
        self.grpc_port, self.http_port = grpc_port, http_port
        self.output = workdir / f"rotel-{signal_}-{grpc_port}.log"
        self._out = self.output.open("wb")
        self.process = subprocess.Popen(
            [
                str(rotel_binary()),
                "start",
                "--exporter",
                "blackhole",
                "--debug-log",
                signal_,
                "--debug-log-verbosity",
                "detailed",
                "--otlp-grpc-endpoint",
                f"{LOOPBACK}:{grpc_port}",
                "--otlp-http-endpoint",
                f"{LOOPBACK}:{http_port}",
                "--pid-file",
                str(workdir / f"rotel-{grpc_port}.pid"),
                "--log-file",
                str(workdir / f"rotel-{grpc_port}.daemon.log"),
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: (
                    self.process.poll() is not None or (port_accepts(grpc_port) and port_accepts(http_port))
                ),
                timeout_s=15,
                what="rotel to listen",
            )
            if self.process.poll() is not None:
                pytest.fail(f"rotel exited at start:\n{self.text()}")
        except BaseException:
            self.stop()
            raise

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def spans(self) -> dict[str, dict[str, Any]]:
        """Span id -> {name, trace_id, parent_id, attributes} of every span received so far."""
        spans: dict[str, dict[str, Any]] = {}
        current: dict[str, Any] | None = None
        in_attributes = False
        for line in self.text().splitlines():
            if line.startswith("Span #"):
                current = {"attributes": {}}
                in_attributes = False
                continue
            if current is None:
                continue
            field = _FIELD.match(line)
            if field:
                key = {"ID": "span_id", "Name": "name", "Parent ID": "parent_id"}.get(
                    field.group(1), "trace_id"
                )
                current[key] = field.group(2)
                if key == "span_id":
                    spans[field.group(2)] = current
                continue
            if line.startswith("Attributes:"):
                in_attributes = True
                continue
            attribute = _ATTRIBUTE.match(line)
            if in_attributes and attribute:
                current["attributes"][attribute.group(1)] = attribute.group(3)
            elif not line.startswith(" "):
                in_attributes = False
        return spans

    def metrics(self) -> dict[str, list[dict[str, str]]]:
        """Metric name -> the attribute sets of its data points, across all exports received."""
        metrics: dict[str, list[dict[str, str]]] = {}
        name: str | None = None
        point: dict[str, str] | None = None
        in_point_attributes = False
        for line in self.text().splitlines():
            descriptor = _DESCRIPTOR_NAME.match(line)
            if descriptor:
                name = descriptor.group(1)
                metrics.setdefault(name, [])
                continue
            if line.startswith("Data point attributes:") and name is not None:
                point = {}
                metrics[name].append(point)
                in_point_attributes = True
                continue
            attribute = _ATTRIBUTE.match(line)
            if in_point_attributes and attribute and point is not None:
                point[attribute.group(1)] = attribute.group(3)
            else:
                in_point_attributes = False
        return metrics

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._out.close()


# --- Arize Phoenix ---------------------------------------------------------------------------------


class Phoenix:
    """``phoenix serve`` on 127.0.0.1 (HTTP and gRPC) with a throwaway working directory."""

    def __init__(self, workdir: Path, *, startup_timeout_s: float = 90) -> None:
        self.workdir = workdir
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = workdir / "phoenix.log"
        self._out = self.log.open("wb")
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(workdir),
            "PHOENIX_HOST": LOOPBACK,
            "PHOENIX_PORT": str(self.http_port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        for name in list(env):  # our own OTLP settings must not make Phoenix trace itself
            if name.startswith("OTEL_"):
                del env[name]
        self.process = subprocess.Popen(
            [str(tools_python()), str(Path(__file__).with_name("otlp_phoenix_launcher.py"))],
            cwd=workdir,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(
                lambda: self.process.poll() is not None or self._healthy(),
                timeout_s=startup_timeout_s,
                what="Phoenix to start",
            )
            if self.process.poll() is not None:
                pytest.fail(f"phoenix exited at start:\n{self.log.read_text(errors='replace')}")
            wait_until(lambda: port_accepts(self.grpc_port), timeout_s=15, what="Phoenix gRPC")
        except BaseException:
            self.stop()
            raise

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def get(self, path: str, **query: Any) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query, doseq=True)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def spans(self, trace_id: str, project: str = "default") -> list[dict[str, Any]]:
        """Every span Phoenix stored for ``trace_id`` (REST ``GET /v1/projects/{p}/spans``)."""
        try:
            body = self.get(f"/v1/projects/{project}/spans", trace_id=trace_id, limit=1000)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # the project appears with its first span
                return []
            raise
        return list(body["data"])

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._out.close()


def run_python(
    script: Path, env: dict[str, str], *, cwd: Path, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with our interpreter, ``src`` importable, and ``env`` on top of ours."""
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
