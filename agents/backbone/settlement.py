"""Settling a Service Bus message by what handling it did: complete, dead-letter, abandon,
or (a `RetryLater`, such as an open breaker) reschedule a copy for later.

Works with the SDK's `ServiceBusReceiver` (and anything with its settlement methods, such as
the tests' `Deliveries`) and with the Functions `ServiceBusMessageActions` of
azurefunctions-extensions-bindings-servicebus (`complete`, `abandon`, `deadletter`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agents.backbone import telemetry
from agents.backbone.errors import BackboneError, Disposition, RetryLater, classify
from agents.backbone.processing import Outcome

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusSender

log = logging.getLogger(__name__)


@runtime_checkable
class Receiver(Protocol):
    """The settlement half of `azure.servicebus.ServiceBusReceiver`."""

    def complete_message(self, message: Any) -> None: ...

    def abandon_message(self, message: Any) -> None: ...

    def dead_letter_message(
        self, message: Any, reason: str | None = None, error_description: str | None = None,
    ) -> None: ...


@runtime_checkable
class MessageActions(Protocol):
    """The settlement methods of the Functions `ServiceBusMessageActions`."""

    def complete(self, message: Any) -> None: ...

    def abandon(self, message: Any) -> None: ...

    def deadletter(self, message: Any, deadletter_reason: str | None = None,
                   deadletter_error_description: str | None = None) -> None: ...


Settler = Receiver | MessageActions


class Settlement(enum.Enum):
    COMPLETED = "completed"
    DEAD_LETTERED = "dead-lettered"
    ABANDONED = "abandoned"
    RESCHEDULED = "rescheduled"


RETRY_COUNT = "backbone-retry-later-count"


class ScheduledRetry:
    """Puts a message back for later: a copy scheduled `retry_after` seconds ahead on the
    entity's sender (Service Bus has no abandon-with-delay), then the original is completed.

    The copy keeps body and properties (so the event id, the inbox key, is the same: a crash
    between the send and the completion leaves a duplicate the inbox absorbs) and gets a new
    MessageId (duplicate detection would drop one that reused it). After `max_retries`
    copies the message is dead-lettered with reason `RetryLaterExhausted`: never forever.
    """

    def __init__(self, sender: ServiceBusSender, *, max_retries: int = 10,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.sender = sender
        self.max_retries = max_retries
        self._clock = clock

    def retries(self, message: Any) -> int:
        """How many times this message was already put back."""
        return int(_properties(message).get(RETRY_COUNT, 0))

    def schedule(self, message: Any, retry_after: float) -> None:
        from azure.servicebus import ServiceBusMessage

        count = self.retries(message) + 1
        properties: dict[str | bytes, Any] = dict(_properties(message).items())
        properties[RETRY_COUNT] = count
        body = message.body if isinstance(message.body, bytes | str) else b"".join(message.body)
        self.sender.schedule_messages(ServiceBusMessage(
            body, message_id=f"{message.message_id}~retry{count}",
            content_type=message.content_type, correlation_id=message.correlation_id,
            subject=message.subject, session_id=message.session_id,
            application_properties=properties,
        ), self._clock() + timedelta(seconds=retry_after))


def dead_letter(settler: Any, message: Any, reason: str, description: str) -> None:
    """Dead-letter `message` with a reason and description via an SDK receiver or the
    Functions message actions (`deadletter(message, deadletter_reason=..., ...)`)."""
    if isinstance(settler, Receiver):
        settler.dead_letter_message(message, reason=reason, error_description=description)
    else:
        settler.deadletter(message, deadletter_reason=reason,
                           deadletter_error_description=description)


def _complete(settler: Settler, message: Any) -> None:
    if isinstance(settler, Receiver):
        settler.complete_message(message)
    else:
        settler.complete(message)


def _abandon(settler: Settler, message: Any) -> None:
    if isinstance(settler, Receiver):
        settler.abandon_message(message)
    else:
        settler.abandon(message)


def settle(receiver: Settler, message: Any, work: Callable[[], Outcome[Any] | None], *,
           retry: ScheduledRetry | None = None) -> Settlement:
    """Run `work` (parse + `MessageProcessor.handle`) and settle the message accordingly:
    poison -> dead-letter at once with reason; `RetryLater` with a `retry` -> a copy
    scheduled after its `retry_after`, the original completed; other transient -> abandon
    (redelivery, and MaxDeliveryCount dead-letters in the end); success -> complete, or
    dead-letter when the handler asked for it (e.g. a saga's exhausted compensation). `work`
    returns None when the message needed no handling (complete)."""
    try:
        outcome = work()
    except Exception as error:
        if isinstance(error, BackboneError) and classify(error) is Disposition.DEAD_LETTER:
            dead_letter(receiver, message, error.reason, error.description)
            return Settlement.DEAD_LETTERED
        if isinstance(error, RetryLater) and retry is not None:
            return _retry_later(receiver, message, error, retry)
        log.warning("abandoning message for redelivery: %s", error, exc_info=error)
        _abandon(receiver, message)
        return Settlement.ABANDONED
    if outcome is not None and outcome.dead_letter is not None:
        dead_letter(receiver, message, outcome.dead_letter.reason, outcome.dead_letter.description)
        return Settlement.DEAD_LETTERED
    _complete(receiver, message)
    return Settlement.COMPLETED


def _properties(message: Any) -> dict[str, Any]:
    """Application properties with text keys (the SDK hands them back as bytes)."""
    return {(key.decode() if isinstance(key, bytes) else str(key)): value
            for key, value in (message.application_properties or {}).items()}


def _retry_later(receiver: Settler, message: Any, error: RetryLater,
                 retry: ScheduledRetry) -> Settlement:
    entity = getattr(retry.sender, "entity_name", "servicebus")
    if retry.retries(message) >= retry.max_retries:
        dead_letter(receiver, message, "RetryLaterExhausted",
                    f"put back {retry.max_retries} times; last: {error.description}")
        telemetry.count_dead_letter(entity, "RetryLaterExhausted")
        return Settlement.DEAD_LETTERED
    log.info("message %s put back for %.1f s: %s", message.message_id, error.retry_after,
             error.description)
    try:
        retry.schedule(message, error.retry_after)
    except Exception as failure:  # the copy did not go: plain redelivery keeps the message
        log.warning("could not schedule a retry of %s (%s); abandoning", message.message_id,
                    failure)
        _abandon(receiver, message)
        return Settlement.ABANDONED
    _complete(receiver, message)
    telemetry.count_rescheduled(entity, "scheduled")
    return Settlement.RESCHEDULED
