"""Settling a message by what handling it did. The settlers here record calls in the two
shapes the backbone supports: the SDK's ServiceBusReceiver and the Functions Python
extension's ServiceBusMessageActions (`deadletter(message, deadletter_reason=...)`)."""

from __future__ import annotations

import pytest

from agents.backbone import (
    InvalidEvent,
    Outcome,
    Settlement,
    StorageUnavailable,
    dead_letter,
    settle,
)
from agents.backbone.unit_of_work import DeadLetterRequest


class RecordingReceiver:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def complete_message(self, message):
        self.calls.append(("complete", message))

    def abandon_message(self, message):
        self.calls.append(("abandon", message))

    def dead_letter_message(self, message, reason=None, error_description=None):
        self.calls.append(("dead-letter", message, reason, error_description))


class RecordingMessageActions:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def deadletter(self, message, deadletter_reason=None, deadletter_error_description=None,
                   properties_to_modify=None):
        self.calls.append(("deadletter", message, deadletter_reason,
                           deadletter_error_description))


def test_dead_letter_through_functions_message_actions():
    actions = RecordingMessageActions()
    dead_letter(actions, "m1", "SchemaViolation", "data invalid at by")
    assert actions.calls == [("deadletter", "m1", "SchemaViolation", "data invalid at by")]


def test_success_completes():
    receiver = RecordingReceiver()
    assert settle(receiver, "m1", lambda: Outcome("p", duplicate=False)) is Settlement.COMPLETED
    assert receiver.calls == [("complete", "m1")]


def test_poison_dead_letters_with_its_reason():
    receiver = RecordingReceiver()

    def work():
        raise InvalidEvent("data invalid at by", reason="SchemaViolation")

    assert settle(receiver, "m1", work) is Settlement.DEAD_LETTERED
    assert receiver.calls == [("dead-letter", "m1", "SchemaViolation", "data invalid at by")]


@pytest.mark.parametrize("error", [StorageUnavailable("503"), RuntimeError("bug")])
def test_transient_or_unknown_failures_abandon_for_redelivery(error):
    receiver = RecordingReceiver()

    def work():
        raise error

    assert settle(receiver, "m1", work) is Settlement.ABANDONED
    assert receiver.calls == [("abandon", "m1")]


def test_a_handler_request_to_dead_letter_is_honoured_after_success():
    receiver = RecordingReceiver()
    outcome = Outcome("p", duplicate=False,
                      dead_letter=DeadLetterRequest("CompensationExhausted", "saga s1"))
    assert settle(receiver, "m1", lambda: outcome) is Settlement.DEAD_LETTERED
    assert receiver.calls == [("dead-letter", "m1", "CompensationExhausted", "saga s1")]
