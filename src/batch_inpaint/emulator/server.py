"""Serving the emulator with uvicorn, with the one thing ASGI cannot do: reset a connection."""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from starlette.types import Scope

from .app import create_app
from .config import EmulatorConfig

_connections: dict[tuple[str, int], Any] = {}


class _TrackedH11(H11Protocol):
    """H11 that remembers each connection's transport by peer address, so the app can abort it."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if peer:
            _connections[(peer[0], peer[1])] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if peer:
            _connections.pop((peer[0], peer[1]), None)
        super().connection_lost(exc)


def abort_connection(scope: Scope) -> None:
    """Drop the client's connection with a TCP reset (SO_LINGER 0), as a crashed proxy would."""
    client = scope.get("client")
    transport = _connections.get((client[0], client[1])) if client else None
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0,
          on_ready: Callable[[str], None] | None = None, tls: tuple[str, str] | None = None) -> None:
    """Run until interrupted. ``on_ready`` gets the endpoint URL once the socket listens."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    app = create_app(config, abort=abort_connection)
    server = uvicorn.Server(uvicorn.Config(
        app, http=_TrackedH11, log_level="critical", access_log=False, timeout_graceful_shutdown=1,
        timeout_keep_alive=30, lifespan="off",
        ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
    ))
    url_host = f"[{host}]" if ":" in host else host

    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets=sockets)
        if on_ready is not None:
            on_ready(f"{'https' if tls else 'http'}://{url_host}:{bound}/cleanup/v1")

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
