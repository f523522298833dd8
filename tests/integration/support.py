"""Helpers the integration tests of more than one package share."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from azure.eventhub import EventHubConsumerClient


def read_hub(connection_string: str, hub: str, expected: int, deadline: float = 30.0
             ) -> list[tuple[str, Any]]:
    """(partition id, event) for every event in `hub`, read with the SDK's consumer from the
    start of each partition until `expected` arrived, plus any that arrive within half a
    second more."""
    received: list[tuple[str, Any]] = []
    enough = threading.Event()
    consumer = EventHubConsumerClient.from_connection_string(
        connection_string, consumer_group="$default", eventhub_name=hub)

    def on_event(context: Any, event: Any) -> None:
        if event is not None:
            received.append((context.partition_id, event))
            if len(received) >= expected:
                enough.set()

    worker = threading.Thread(target=consumer.receive, kwargs={
        "on_event": on_event, "starting_position": "-1", "max_wait_time": 0.2}, daemon=True)
    worker.start()
    enough.wait(deadline)
    time.sleep(0.5)  # a surplus event would already be in the log: see if it is read too
    consumer.close()
    worker.join(timeout=10)
    return received


class _Record(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        endpoint = self.server
        assert isinstance(endpoint, RecordingEndpoint)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        endpoint.received.append((dict(self.headers), body))
        self.send_response(endpoint.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class RecordingEndpoint(ThreadingHTTPServer):
    """A loopback HTTP endpoint on a free port (a context manager): records every POST as
    (headers, body) in `received` and answers `status`, which a test may change."""

    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Record)
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> RecordingEndpoint:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()
        self.server_close()
