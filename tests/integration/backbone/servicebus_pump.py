"""A consumer loop over real `ServiceBusReceiver`s (devstack's Service Bus over AMQP),
settling with the backbone's `settle`, until a condition holds or a generous deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage

from agents.backbone import Outcome, Settlement, settle

SdkConsumer = Callable[[ServiceBusReceivedMessage], Outcome[Any]]
Settled = list[tuple[str, ServiceBusReceivedMessage, Settlement]]


def pump(client: ServiceBusClient, consumers: dict[str, SdkConsumer],
         until: Callable[[Settled], bool], *, timeout: float = 60.0) -> Settled:
    """Receive, handle and settle until `until(settled so far)` holds."""
    settled: Settled = []
    deadline = time.monotonic() + timeout
    with ExitStack() as stack:
        # Entering a receiver opens its link; a first receive with a short max_wait_time
        # would otherwise time out while the link is still attaching.
        receivers = {name: stack.enter_context(client.get_queue_receiver(name))
                     for name in consumers}
        while not until(settled):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s; settled {settled}")
            for name, receiver in receivers.items():
                for message in receiver.receive_messages(max_message_count=10,
                                                         max_wait_time=0.2):
                    outcome = settle(receiver, message,
                                     lambda m=message, c=consumers[name]: c(m))
                    settled.append((name, message, outcome))
    return settled


def receive_until(client: ServiceBusClient, queue: str,
                  until: Callable[[list[ServiceBusReceivedMessage]], bool], *,
                  sub_queue: Any = None, timeout: float = 30.0
                  ) -> list[ServiceBusReceivedMessage]:
    """Receive and complete from `queue` until `until(received)` holds."""
    received: list[ServiceBusReceivedMessage] = []
    deadline = time.monotonic() + timeout
    with client.get_queue_receiver(queue, sub_queue=sub_queue) as receiver:
        while not until(received):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue}: only {len(received)} messages in {timeout}s")
            for message in receiver.receive_messages(max_message_count=10, max_wait_time=0.2):
                receiver.complete_message(message)
                received.append(message)
    return received
