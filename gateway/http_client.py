"""A small keep-alive HTTP/1.1 client for one origin, for the per-call hot paths: the
OPA sidecar's decision query and the lean MCP ``tools/call`` forward.

Why not httpx: on these paths every tool call pays for one request on loopback, and
the generic clients spend more time in their own layers than OPA spends deciding or a
small upstream tool spends answering. httpx.AsyncClient, httpx2 and a bare httpcore
pool took 3–4× this client's time per decision (≈ 0.9 / 0.7 / 0.8 ms against
0.26 ms p50 on a quiet machine; bench/README.md, bench/results/policy_decision-*.md).
The parser is httptools (llhttp, the one uvicorn uses), so only the connection
handling is ours, and it is deliberately narrow:

- one origin (``http://`` or ``https://``), JSON bodies, ``Content-Length`` requests;
  responses may be length-delimited or chunked (llhttp decodes both), and are read
  whole, up to a size limit set per client;
- a connection is reused only after a complete response that allows keep-alive;
  anything else (an error, a timeout, a cancellation mid-exchange) closes it, so a
  half-read response can never be taken for the next one;
- an idle connection the server has closed (its keep-alive timeout, a restart) is
  seen before reuse — the socket reads as end-of-file — and dropped, as httpcore does;
- only for read-only requests (``retry_unanswered``: the OPA queries) is a request
  that failed on a reused connection before any response byte arrived sent again, on
  the next idle connection or a new one. A tool call is never resent: the server may
  have run it and died before answering, and running it twice is worse than failing.

Errors are `HttpTransportError`; callers turn them into their own errors (the policy
engine into a deny, the upstream client into "upstream unavailable").
"""

from __future__ import annotations

import os
import select
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httptools
from anyio.abc import ByteStream, SocketAttribute

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # a decision is a few hundred bytes


class HttpTransportError(Exception):
    """The request did not produce a complete HTTP response."""

    def __init__(self, message: str, *, response_started: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # Whether any byte of a response arrived (a retry is only safe before that).
        self.response_started = response_started


class HttpConnectError(HttpTransportError):
    """No connection could be opened (refused, unresolvable, unreachable)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    # Lower-cased, without parameters ("application/json"); "" when absent.
    content_type: str = ""


class _Receiver:
    """httptools callbacks: collects the body and notes when the message is complete."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.complete = False
        self.keep_alive = False
        self.content_type = b""
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_headers_complete(self) -> None:
        # Read here, as uvicorn does: llhttp resets its flags once the message is
        # complete, after which `should_keep_alive` is always false.
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        # Not checked for size here: an exception in a callback reaches the caller as
        # httptools' generic callback error; `_exchange` checks after each chunk.
        self.body += chunk

    def on_message_complete(self) -> None:
        self.complete = True


class KeepAliveClient:
    """Pooled keep-alive connections to one origin; safe for concurrent use."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 32,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry_unanswered: bool = True,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port:
            host_header += f":{parts.port}"
        self._host_header = host_header.encode("ascii")
        self._idle: list[ByteStream] = []
        # Bounds the sockets a burst of calls can open; waiting for one counts against
        # the caller's deadline like any other part of the request.
        self._slots = anyio.Semaphore(max_connections)
        self._closed = False
        self._max_response_bytes = max_response_bytes
        self._retry_unanswered = retry_unanswered

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        accept: str = "application/json",
    ) -> HttpResponse:
        """Sends one request; raises `HttpTransportError` unless a full response arrives.

        ``headers`` are sent as given: the caller vouches that names and values are
        free of CR and LF (they come from configuration or are encoded for headers)."""
        if self._closed:
            raise HttpTransportError("client is closed")
        message = self._encode(method, self._prefix + target, body, headers, accept)
        async with self._slots:
            while self._idle:
                stream = self._idle.pop()
                if _closed_by_peer(stream):
                    await anyio.aclose_forcefully(stream)
                    continue
                if not self._retry_unanswered:
                    return await self._exchange(stream, message)
                try:
                    return await self._exchange(stream, message)
                except HttpTransportError as exc:
                    if exc.response_started:
                        raise
                    # Closed by the server as we sent: try the next (or a new) one.
            return await self._exchange(await self._connect(), message)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for stream in idle:
            await anyio.aclose_forcefully(stream)

    def _encode(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        accept: str,
    ) -> bytes:
        head = [
            f"{method} {target} HTTP/1.1".encode("ascii"),
            b"Host: " + self._host_header,
            b"User-Agent: agent-gateway",
            b"Accept: " + accept.encode("latin-1"),
        ]
        for name, value in (headers or {}).items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} contains a line break")
            head.append(f"{name}: {value}".encode("latin-1"))
        if body is not None:
            head.append(b"Content-Type: application/json")
            head.append(b"Content-Length: " + str(len(body)).encode("ascii"))
        return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")

    async def _connect(self) -> ByteStream:
        try:
            if self._tls is not None:
                return await anyio.connect_tcp(
                    self._host, self._port, tls=True, ssl_context=self._tls, tls_hostname=self._host
                )
            return await anyio.connect_tcp(self._host, self._port)
        except OSError as exc:
            raise HttpConnectError(f"cannot connect: {_connect_reason(exc)}") from None

    async def _exchange(self, stream: ByteStream, message: bytes) -> HttpResponse:
        receiver = _Receiver()
        parser = receiver.parser = httptools.HttpResponseParser(receiver)
        started = False
        try:
            await stream.send(message)
            while not receiver.complete:
                try:
                    chunk = await stream.receive(65536)
                except anyio.EndOfStream:
                    raise HttpTransportError(
                        "connection closed before the response was complete",
                        response_started=started,
                    ) from None
                started = True
                parser.feed_data(chunk)
                if len(receiver.body) > self._max_response_bytes:
                    raise HttpTransportError(
                        f"response larger than {self._max_response_bytes} bytes",
                        response_started=True,
                    )
        except HttpTransportError:
            await anyio.aclose_forcefully(stream)
            raise
        except httptools.HttpParserError as exc:
            await anyio.aclose_forcefully(stream)
            raise HttpTransportError(
                f"malformed HTTP response: {exc}", response_started=True
            ) from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            await anyio.aclose_forcefully(stream)
            raise HttpTransportError(
                f"connection failed: {exc or type(exc).__name__}", response_started=started
            ) from None
        except BaseException:
            # Cancelled or timed out mid-exchange: the connection's state is unknown.
            await anyio.aclose_forcefully(stream)
            raise
        if receiver.keep_alive and not self._closed:
            self._idle.append(stream)
        else:
            await anyio.aclose_forcefully(stream)
        content_type = receiver.content_type.split(b";")[0].strip().lower().decode("latin-1")
        return HttpResponse(parser.get_status_code(), bytes(receiver.body), content_type)


def _closed_by_peer(stream: ByteStream) -> bool:
    """Whether an idle connection is unusable: the peer closed it (end-of-file is
    readable) or sent bytes nobody asked for. Never blocks."""
    sock = stream.extra(SocketAttribute.raw_socket, None)
    if sock is None:
        return False
    # poll on the descriptor, not recv: uvloop's transport sockets refuse recv().
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _connect_reason(exc: OSError) -> str:
    """The first concrete cause ("connection refused"): anyio reports a failed connect as
    "All connection attempts failed", with each attempt's error in its cause."""
    cause = exc.__cause__
    attempts = getattr(cause, "exceptions", None) or ([cause] if cause is not None else [])
    for attempt in [*attempts, exc]:
        if isinstance(attempt, OSError) and attempt.errno and attempt.errno > 0:
            # asyncio words it "Connect call failed (…)"; the errno says why.
            return os.strerror(attempt.errno).lower()
        if isinstance(attempt, OSError) and attempt.strerror:
            return attempt.strerror.lower()
    return (str(exc) or type(exc).__name__).lower()
