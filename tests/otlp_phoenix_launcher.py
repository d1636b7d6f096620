"""Run ``phoenix serve`` with its OTLP/gRPC receiver bound to 127.0.0.1 only.

Phoenix binds gRPC to ``[::]`` unconditionally; the test suite may open ports on loopback only,
so this launcher (run by ``.venv-phoenix``'s Python, not ours) rewrites that one address.
"""

from __future__ import annotations

import sys

import grpc.aio._server as grpc_aio_server  # type: ignore[import-not-found]

_original_add_insecure_port = grpc_aio_server.Server.add_insecure_port


def _add_insecure_port_on_loopback(self: object, address: str) -> int:
    if address.startswith("[::]:"):
        address = "127.0.0.1:" + address.removeprefix("[::]:")
    return int(_original_add_insecure_port(self, address))


grpc_aio_server.Server.add_insecure_port = _add_insecure_port_on_loopback

if __name__ == "__main__":
    from phoenix.server.main import main  # type: ignore[import-not-found]

    sys.argv = ["phoenix", "serve", *sys.argv[1:]]
    sys.exit(main())
