"""Storage fault injection through the SDK's public `transport=` argument.

`StorageOutage` is a real loopback HTTP server answering 503 ServerBusy (as Table Storage
does when throttling); `OutageTransport` wraps the SDK's RequestsTransport and, while an
outage is switched on, sends requests to that server instead of Azurite.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.pipeline.transport import HttpTransport, RequestsTransport


class _Busy(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"odata.error": {"code": "ServerBusy", "message": {
            "lang": "en-US", "value": "The server is busy."}}}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json;odata=minimalmetadata")
        self.send_header("x-ms-error-code", "ServerBusy")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_MERGE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


class StorageOutage:
    """A 503 server on a free loopback port; a context manager."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.netloc = f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> StorageOutage:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


class OutageTransport(HttpTransport):
    """Forwards to Azurite normally; while `failing` > 0, the next requests get a 503."""

    def __init__(self, outage: StorageOutage) -> None:
        self._inner = RequestsTransport()
        self._outage = outage
        self._lock = threading.Lock()
        self.failing = 0
        self.failed = 0

    def fail_next(self, count: int) -> None:
        with self._lock:
            self.failing = count

    def send(self, request: Any, **kwargs: Any) -> Any:
        with self._lock:
            redirect = self.failing > 0
            if redirect:
                self.failing -= 1
                self.failed += 1
        if redirect:
            parts = urlsplit(request.url)
            request.url = urlunsplit(parts._replace(netloc=self._outage.netloc))
        return self._inner.send(request, **kwargs)

    def open(self) -> None:
        self._inner.open()

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> OutageTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self._inner.__exit__(*args)
