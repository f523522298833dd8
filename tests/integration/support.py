"""Helpers the integration tests of more than one package share."""

from __future__ import annotations

import threading
import time
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
