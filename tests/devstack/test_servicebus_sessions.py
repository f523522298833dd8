"""Sessions with the sync SDK: session receivers, state, lock renewal, next available."""

from __future__ import annotations

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    ServiceBusError,
    SessionCannotBeLockedError,
    SessionLockLostError,
)

MAX_WAIT = 3


def send(client: ServiceBusClient, *pairs: tuple[str, str]) -> None:
    with client.get_queue_sender("sessions") as sender:
        sender.send_messages([ServiceBusMessage(body, session_id=sid) for sid, body in pairs])


def test_session_receiver_gets_only_its_session_in_order(client):
    send(client, ("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a3"))
    with client.get_queue_receiver("sessions", session_id="a") as receiver:
        got = []
        while batch := receiver.receive_messages(max_message_count=10, max_wait_time=1):
            got.extend(batch)
        assert [str(m) for m in got] == ["a1", "a2", "a3"]
        assert {m.session_id for m in got} == {"a"}
        for message in got:
            receiver.complete_message(message)


def test_next_available_session_picks_a_session_with_messages(client):
    send(client, ("only", "hello"))
    with client.get_queue_receiver("sessions", session_id=NEXT_AVAILABLE_SESSION) as receiver:
        assert receiver.session.session_id == "only"
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert str(message) == "hello"
        receiver.complete_message(message)


def test_session_state_is_kept_between_receivers(client):
    send(client, ("s", "x"))
    with client.get_queue_receiver("sessions", session_id="s") as receiver:
        assert receiver.session.get_state() is None
        receiver.session.set_state(b"step-2")
    with client.get_queue_receiver("sessions", session_id="s") as receiver:
        assert receiver.session.get_state() == b"step-2"


def test_session_lock_renewal_extends_locked_until(client):
    send(client, ("r", "x"))
    with client.get_queue_receiver("sessions", session_id="r") as receiver:
        before = receiver.session.locked_until_utc
        assert before is not None
        after = receiver.session.renew_lock()
        assert after > before


def test_a_locked_session_cannot_be_taken_by_another_receiver(connection_string):
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        send(client, ("busy", "x"))
        with client.get_queue_receiver("sessions", session_id="busy") as holder:
            holder.receive_messages(max_wait_time=1)
            other = client.get_queue_receiver("sessions", session_id="busy")
            with pytest.raises(SessionCannotBeLockedError):
                other.__enter__()
            other.close()


def test_abandoned_session_message_comes_back_to_the_session(client):
    send(client, ("ab", "again"))
    with client.get_queue_receiver("sessions", session_id="ab") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        receiver.abandon_message(message)
        (second,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert str(second) == "again"
        assert second.delivery_count == 1
        receiver.complete_message(second)


def test_a_message_without_session_id_is_refused_by_a_session_queue(connection_string):
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client, \
            client.get_queue_sender("sessions") as sender, pytest.raises(ServiceBusError):
        sender.send_messages(ServiceBusMessage("no session"))


def test_a_plain_receiver_is_refused_by_a_session_queue(connection_string):
    with ServiceBusClient.from_connection_string(connection_string, retry_total=0) as client:
        receiver = client.get_queue_receiver("sessions")
        with pytest.raises(ServiceBusError):
            receiver.__enter__()
        receiver.close()


def test_list_sessions_names_sessions_with_messages_or_state(client):
    send(client, ("with-messages", "x"))
    with client.get_queue_receiver("sessions", session_id="with-state") as receiver:
        receiver.session.set_state(b"kept")
    assert sorted(client.list_queue_sessions("sessions")) == ["with-messages", "with-state"]


def test_next_available_session_receiver_waits_for_a_session_to_arrive(client, stack):
    import threading

    from .conftest import wait_until

    received: list[str] = []

    def receive_next_session() -> None:
        with client.get_queue_receiver("sessions", session_id=NEXT_AVAILABLE_SESSION,
                                       max_wait_time=20) as receiver:
            (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
            received.append(f"{receiver.session.session_id}:{message}")
            receiver.complete_message(message)

    waiting = threading.Thread(target=receive_next_session)
    waiting.start()
    entity = stack.servicebus.broker.entity("sessions")
    wait_until(lambda: stack.call(lambda: len(entity.session_waiters)) == 1)
    send(client, ("late", "arrived"))
    waiting.join(timeout=30)
    assert wait_until(lambda: received) == ["late:arrived"]


def test_expired_locks_on_a_session_queue_expire_the_session_lock(client, stack):
    # Session messages have no locks of their own on the service: expiring locks there
    # means the session lock is lost, and the session's messages go to its next receiver.
    send(client, ("ex", "held"))
    with client.get_queue_receiver("sessions", session_id="ex") as receiver:
        (message,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert stack.faults.expire_locks("sessions") == 1
        with pytest.raises(SessionLockLostError):
            receiver.complete_message(message)
    with client.get_queue_receiver("sessions", session_id="ex") as receiver:
        (again,) = receiver.receive_messages(max_wait_time=MAX_WAIT)
        assert (str(again), again.delivery_count) == ("held", 1)
        receiver.complete_message(again)
