"""The engine's HTTP door inside daphne, before a request reaches the ASGI application.

Daphne (Twisted) receives a request whole, its body spooled to a temporary file, before it
hands it to the application; so ``workflows.api.guard``'s 413 came after every byte of a
500 MB body was in, and a client trickling its headers a byte at a time held a connection as
long as it liked (Twisted's idle timeout is reset by every byte). Here, per request:

- a declared ``Content-Length`` over ``SCHED_MAX_PAYLOAD_BYTES`` is answered 413
  ``payload_too_large`` (the API's error body, with the size and the limit) as soon as the
  headers are in, and the connection is closed: the body is never received;
- a body of unknown length (chunked) is counted as it arrives and cut the same way once it
  passes the limit;
- the request's headers and body must have arrived within
  ``SCHED_HTTP_RECEIVE_TIMEOUT_SECONDS`` (30 s) of its first line, and a connection must
  send its first line within that time: otherwise 408 ``request_timeout`` and the connection
  is dropped. A connection kept alive between requests is closed after Twisted's own idle
  timeout (``IDLE_SECONDS``).

A websocket upgrade is a request like another until it is in; then the websocket's own
timeouts (pings) apply. What passes goes on to daphne unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import autobahn.util
import daphne.server  # noqa: F401  (first: it installs the asyncio reactor Twisted runs on)
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import reactor as _reactor

from schedproject import config
from workflows.api.errors import error_body
from workflows.api.guard import too_large_body

IDLE_SECONDS = 60  # Twisted's HTTPChannel default, said here

# Autobahn builds the arguments of a debug log line for every websocket frame it sends,
# coloured through click even when debug logging is off: 2% of the engine's event loop under
# load. Without the colours the line costs a few string operations.
autobahn.util._HAS_CLICK = False
reactor: Any = _reactor  # (Twisted's interface stubs type callLater's arguments askew)


class GuardedRequest(WebRequest):  # type: ignore[misc]
    """Daphne's request, refused early when too large or too slow (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Daphne hands the body to the application as it came; Twisted's own parse of a
        # form's body (and of every POST's Content-Type, through the email package) is
        # never read, and was 6% of a start's CPU.
        self._parsePOSTFormSubmission = False
        self._refused = False
        self._received = 0
        self.channel.sched_first_request = True
        self._deadline: Any = reactor.callLater(config.get().http_receive_timeout_seconds,
                                                self._too_slow)

    def gotLength(self, length: int | None) -> None:
        limit = config.get().max_payload_bytes
        if length is not None and length > limit:
            self._refuse(413, b"Payload Too Large", too_large_body(limit, length))
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        limit = config.get().max_payload_bytes
        if self._received > limit:
            self._refuse(413, b"Payload Too Large", too_large_body(limit, None))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._stop_deadline()
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:
        self._stop_deadline()
        super().connectionLost(reason)

    def _too_slow(self) -> None:
        self._deadline = None
        seconds = config.get().http_receive_timeout_seconds
        self._refuse(408, b"Request Timeout", error_body(
            "request_timeout", f"the request did not arrive whole within {seconds:g} s"))

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _refuse(self, status: int, reason: bytes, body: dict[str, Any]) -> None:
        if self._refused:
            return
        self._refused = True
        self._stop_deadline()
        payload = json.dumps(body).encode()
        transport = self.channel.transport
        transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                        % (status, reason, len(payload), payload))
        transport.loseConnection()


class GuardedHTTPFactory(HTTPFactory):  # type: ignore[misc]
    """Daphne's HTTP factory, building connections whose requests are ``GuardedRequest``."""

    def log(self, request: Any) -> None:
        """No Twisted access-log line: daphne logs requests itself (``action_logger``), and
        Twisted's line went, formatted, to a log nobody observes."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = GuardedRequest
        protocol.timeOut = IDLE_SECONDS
        # Twisted wraps the HTTP/1.1 channel (the one requests see) in a negotiating proxy.
        channel = getattr(protocol, "_channel", protocol)
        channel.sched_first_request = False

        def silent() -> None:  # connected, and not even a request line in time
            transport = getattr(channel, "transport", None)
            if not channel.sched_first_request and transport is not None:
                transport.abortConnection()

        reactor.callLater(config.get().http_receive_timeout_seconds, silent)
        return protocol
