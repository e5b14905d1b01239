"""Serving the app with uvicorn on a socket bound beforehand, with the connection-level guards.

uvicorn parses HTTP with httptools (llhttp, Node.js's parser: strict, and cheaper than h11 in pure Python, which
counts when 16 clients share the server's one core), decodes chunked bodies and applies flow control (it stops
reading a body the app is not reading). On top of it, each connection:
- must finish its request headers within ``header_timeout`` seconds of connecting, or it is closed (uvicorn's
  keep-alive timeout only starts after a first response);
- counts against ``max_connections``: a new connection beyond it closes the oldest connection that has not sent
  its headers yet, or, when every connection is busy with a request, is itself closed at once. Clients retry a
  closed connection; a 503 (uvicorn's answer for ``limit_concurrency``) would make the SDK wait for
  "maintenance".
- gets ``Connection: close`` on every response (uvicorn then closes it): the SDK forks reporter processes that
  inherit pooled connections, and a kept-alive socket shared by two processes hangs one of them.
- that sends something llhttp cannot parse (a bad request line or header, a non-numeric ``Content-Length``, a
  negative chunk size) is answered 400 with the JSON envelope, then closed.
"""

from __future__ import annotations

import logging
import resource
import socket

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .asgi import envelope_bytes
from .limits import Limits

log = logging.getLogger("localserver")

FD_MARGIN = 256  # descriptors beyond the connections: the database, uploads, downloads, the threadpool
GRACEFUL_SHUTDOWN_SEC = 5


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0 picks a free port), before anything is served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


class UvicornServer:
    """``app`` on ``sock``: :meth:`run` blocks (in any thread, on its own event loop) until :meth:`stop`."""

    def __init__(self, app, sock: socket.socket, limits: Limits):
        _raise_open_files_limit(limits.max_connections + FD_MARGIN)
        config = uvicorn.Config(
            CloseConnection(app),
            http=guarded_protocol(limits),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SEC,
        )
        self._server = uvicorn.Server(config)
        self._sock = sock

    def run(self) -> None:
        """In the main thread, SIGINT/SIGTERM stop it gracefully and are raised again afterwards."""
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True


class CloseConnection:
    """ASGI middleware: ``Connection: close`` on every response, whichever route or error produced it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the header timeout, the connection cap and envelope 400s (module
    docstring)."""

    class GuardedProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.opened_at = self.loop.time()
            self._headers_due = self.loop.call_later(limits.header_timeout, self._close_if_no_request)
            if len(self.connections) > limits.max_connections:
                self._make_room()

        def connection_lost(self, exc) -> None:
            self._headers_due.cancel()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None and not self.transport.is_closing()

        def _close_if_no_request(self) -> None:
            if self._waiting_for_headers():
                log.debug("closing %s: no complete request headers within %g s", self.client, limits.header_timeout)
                self.transport.close()

        def _make_room(self) -> None:
            idle = [c for c in self.connections if c is not self and c._waiting_for_headers()]
            if idle:
                min(idle, key=lambda c: c.opened_at).transport.close()
            else:
                log.warning(
                    "refusing a connection from %s: %d connections busy", self.client, len(self.connections) - 1
                )
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            log.info("unparsable request from %s: %s", self.client, msg)
            if self.cycle is not None and self.cycle.response_started:  # nothing more can be said
                self.transport.close()
                return
            body = envelope_bytes(400, 0, "Malformed HTTP request")
            head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
            self.transport.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
            self.transport.close()

    return GuardedProtocol


def _raise_open_files_limit(wanted: int) -> None:
    """Idle connections each hold a descriptor: raise the soft limit (often 1024) toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("only %d open files allowed (hard limit): fewer than --max-connections needs", hard)
