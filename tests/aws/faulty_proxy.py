"""An HTTP proxy in front of the moto server that answers some requests with AWS errors.

A failed request never reaches moto: the proxy reads it and answers at once with what the
service sends when it throttles or fails (DynamoDB: ``400 ThrottlingException`` or ``500
InternalServerError``; SQS: ``400 RequestThrottled`` or ``503 ServiceUnavailable``; S3: ``503
SlowDown`` or ``500 InternalError``). Every other request is forwarded verbatim and its answer
relayed, so boto3 clients pointed at the proxy see a real, flaky AWS endpoint.

Which requests fail: per service, request number ``n`` (counting from 1) fails when
``n % every == 0`` (``every=1``: all of them; ``every=0``: none). botocore numbers the attempts
of one call (header ``amz-sdk-request: attempt=N``); attempts after ``max_failures`` failed ones
always go through and are not counted, which bounds the backoff a test waits for (``None``: no
limit, an outage). Change the plan while running with :meth:`FaultyProxy.set_faults`.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

SERVICES = ("dynamodb", "sqs", "s3")

# Answers to hand out in turn, per service: (status, content type, body).
_JSON = "application/x-amz-json-1.0"
_FAULTS: dict[str, list[tuple[int, str, bytes]]] = {
    "dynamodb": [
        (400, _JSON, json.dumps({
            "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            "message": "Rate exceeded",
        }).encode()),
        (500, _JSON, json.dumps({
            "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "message": "Internal server error",
        }).encode()),
    ],
    "sqs": [
        (400, _JSON, json.dumps({
            "__type": "com.amazonaws.sqs#RequestThrottled",
            "message": "Request is throttled.",
        }).encode()),
        (503, _JSON, json.dumps({
            "__type": "com.amazonaws.sqs#ServiceUnavailable",
            "message": "The request has failed due to a temporary failure of the server.",
        }).encode()),
    ],
    "s3": [
        (503, "application/xml", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
         b"<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
         b"<RequestId>FAULTY</RequestId></Error>"),
        (500, "application/xml", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
         b"<Code>InternalError</Code><Message>We encountered an internal error. Please try "
         b"again.</Message><RequestId>FAULTY</RequestId></Error>"),
    ],
}

# Hop-by-hop headers: they describe one connection, not the message.
_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "expect",
})


def service_of(headers: Message, path: str) -> str | None:
    """Which AWS service a request is for (``None``: not one to fail, e.g. moto's own API)."""
    if path.startswith("/moto-api"):
        return None
    target = str(headers.get("X-Amz-Target") or "")
    if target.startswith("DynamoDB_"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs"
    return "s3"


def attempt_of(headers: Message) -> int:
    """Which attempt of its call a request is (botocore's ``amz-sdk-request`` header), from 1."""
    info = str(headers.get("amz-sdk-request") or "")
    for part in info.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            return int(value)
    return 1


class FaultyProxy:
    """A threaded proxy on 127.0.0.1 in front of ``upstream`` (a moto endpoint URL)."""

    def __init__(
        self,
        upstream: str,
        *,
        every: int = 3,
        services: Iterable[str] = SERVICES,
        max_failures: int | None = 1,
    ) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._every = every
        self._services = frozenset(services)
        self._max_failures = max_failures
        self._seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        """Requests answered with an error, per service."""
        self.forwarded: Counter[str] = Counter()
        """Requests passed on to the upstream, per service."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="faulty-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        """The proxy's endpoint URL (give it to boto3 as ``endpoint_url``)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def set_faults(
        self, every: int, services: Iterable[str] = SERVICES, max_failures: int | None = 1
    ) -> None:
        """Fail every ``every``-th request of ``services`` from now on (0: none, 1: all)."""
        with self._lock:
            self._every = every
            self._services = frozenset(services)
            self._max_failures = max_failures
            self._seen.clear()

    def start(self) -> FaultyProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _fault_for(self, service: str | None, attempt: int) -> tuple[int, str, bytes] | None:
        """The error to answer with, or ``None`` to forward (counts the request either way)."""
        if service is None:
            return None
        with self._lock:
            fail = False
            if self._max_failures is None or attempt <= self._max_failures:
                self._seen[service] += 1
                fail = (
                    service in self._services
                    and self._every > 0
                    and self._seen[service] % self._every == 0
                )
            if not fail:
                self.forwarded[service] += 1
                return None
            self.injected[service] += 1
            faults = _FAULTS[service]
            return faults[self.injected[service] % len(faults)]

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = b"" if method == "HEAD" else response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without TCP_NODELAY each answer
            # would wait out the client's delayed ACK (40 ms).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: the tests read the counters instead

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                service = service_of(self.headers, self.path)
                fault = proxy._fault_for(service, attempt_of(self.headers))
                if fault is not None:
                    status, content_type, payload = fault
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("x-amzn-RequestId", "FAULTY")
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                try:
                    status, reason, headers, data = proxy._forward(
                        self.command, self.path, list(self.headers.items()), body
                    )
                except OSError as exc:
                    self.send_error(502, f"upstream failed: {exc}")
                    return
                self.send_response(status, reason)
                for name, value in headers:
                    lower = name.lower()
                    if lower in _HOP or lower in ("server", "date"):
                        continue
                    if lower == "content-length" and self.command != "HEAD":
                        continue
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler
