"""The in-memory broker double behaves like Service Bus peek-lock where the tests rely on it
(checked here so that no backbone test passes because of the double)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import ServiceBusMessage

from tests.integration.backbone.broker import InMemoryBroker

Q = "q"


def send(broker: InMemoryBroker, message_id: str, at: datetime | None = None) -> bool:
    return broker.send(Q, ServiceBusMessage(b"{}", message_id=message_id,
                                            scheduled_enqueue_time_utc=at))


def test_a_locked_message_is_not_delivered_again_and_complete_removes_it():
    broker = InMemoryBroker()
    send(broker, "m1")
    receiver = broker.receiver(Q)
    [message] = receiver.receive_messages()
    assert receiver.receive_messages() == []
    receiver.complete_message(message)
    assert broker.available(Q) == []


def test_abandon_redelivers_with_the_delivery_count_increased():
    broker = InMemoryBroker()
    send(broker, "m1")
    receiver = broker.receiver(Q)
    [first] = receiver.receive_messages()
    receiver.abandon_message(first)
    [again] = receiver.receive_messages()
    assert (again.message_id, again.delivery_count) == ("m1", 2)


def test_the_last_allowed_delivery_abandoned_dead_letters_with_a_reason():
    broker = InMemoryBroker(max_delivery_count=2)
    send(broker, "m1")
    receiver = broker.receiver(Q)
    for _ in range(2):
        [message] = receiver.receive_messages()
        receiver.abandon_message(message)
    [dead] = broker.dead_letters(Q)
    assert (dead.dead_letter_reason, dead.delivery_count) == ("MaxDeliveryCountExceeded", 2)
    assert receiver.receive_messages() == []


def test_a_duplicate_message_id_is_dropped():
    broker = InMemoryBroker()
    assert send(broker, "m1") and not send(broker, "m1")
    assert len(broker.available(Q)) == 1


def test_a_scheduled_message_is_held_until_its_time():
    broker = InMemoryBroker()
    send(broker, "later", datetime.now(UTC) + timedelta(minutes=1))
    receiver = broker.receiver(Q)
    assert receiver.receive_messages() == []
    assert broker.advance_to_next_scheduled()
    assert [m.message_id for m in receiver.receive_messages()] == ["later"]


def test_settling_a_message_twice_is_an_error():
    broker = InMemoryBroker()
    send(broker, "m1")
    receiver = broker.receiver(Q)
    [message] = receiver.receive_messages()
    receiver.complete_message(message)
    with pytest.raises(RuntimeError, match="not locked"):
        receiver.complete_message(message)
