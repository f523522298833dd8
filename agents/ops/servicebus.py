"""Reading and settling chosen messages of a Service Bus queue or sub-queue.

Peek never consumes. Service Bus cannot receive an active message by sequence number, so
`settle_chosen` locks messages in order, settles the chosen ones, and gives the others back
(abandon) only at the end, so a released message is not received again in the same pass.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.exceptions import AzureError
from azure.eventhub.exceptions import EventHubError
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import ServiceBusError

from agents.ops.config import ServiceBusEntity

_PEEK_PAGE = 250
_RECEIVE_PAGE = 50
_RECEIVE_WAIT_SECONDS = 2.0


@contextmanager
def receiver(client: ServiceBusClient, entity: ServiceBusEntity, *, dead_letter: bool
             ) -> Iterator[ServiceBusReceiver]:
    """A peek-lock receiver without prefetch: nothing is locked that is not asked for."""
    options: dict[str, Any] = {
        "sub_queue": ServiceBusSubQueue.DEAD_LETTER if dead_letter else None,
        "receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
        "prefetch_count": 0,
    }
    made = (client.get_subscription_receiver(entity.topic, entity.name, **options)
            if entity.topic else client.get_queue_receiver(entity.name, **options))
    with made:
        yield made


def peek_all(peeker: ServiceBusReceiver) -> list[ServiceBusReceivedMessage]:
    """Every message, oldest first, without locking or consuming any."""
    messages: list[ServiceBusReceivedMessage] = []
    next_sequence = 0
    while page := peeker.peek_messages(max_message_count=_PEEK_PAGE,
                                       sequence_number=next_sequence):
        messages.extend(page)
        next_sequence = page[-1].sequence_number + 1  # type: ignore[operator]
    return messages


def settle_chosen(locked: ServiceBusReceiver, *, chosen: Collection[int],
                  act: Callable[[ServiceBusReceivedMessage], bool]) -> set[int]:
    """Lock messages until every chosen sequence number is seen (or none is left); for each
    chosen one call `act` and complete it when `act` returns True, else give it back.

    Returns the sequence numbers completed. `act` raising stops the pass: the message it
    was working on and every other lock are given back, so nothing is lost.
    """
    remaining = set(chosen)
    completed: set[int] = set()
    held: list[ServiceBusReceivedMessage] = []
    try:
        while remaining:
            page = locked.receive_messages(max_message_count=_RECEIVE_PAGE,
                                           max_wait_time=_RECEIVE_WAIT_SECONDS)
            if not page:
                break
            held.extend(page)
            for message in page:
                sequence = message.sequence_number
                if sequence in remaining:
                    remaining.discard(sequence)
                    if act(message):
                        locked.complete_message(message)
                        held.remove(message)
                        completed.add(sequence)
    finally:
        for message in held:
            locked.abandon_message(message)
    return completed


class StopAtFirstFailure:
    """Wraps the resend of one message for `settle_chosen`: the first failure is recorded and
    nothing more is tried (the target is likely down, and every try would wait out the SDK's
    retries); the messages not sent stay where they are."""

    def __init__(self, send: Callable[[ServiceBusReceivedMessage], None]) -> None:
        self._send = send
        self.failed: dict[int, str] = {}

    def __call__(self, message: ServiceBusReceivedMessage) -> bool:
        sequence = message.sequence_number or 0
        if self.failed:
            self.failed[sequence] = "not tried after an earlier failure"
            return False
        try:
            self._send(message)
        except (ServiceBusError, EventHubError, AzureError, OSError) as error:
            self.failed[sequence] = f"send failed: {type(error).__name__}: {error}"
            return False
        return True
