"""Settling a Service Bus message by what handling it did: complete, dead-letter, abandon.

Works with the SDK's `ServiceBusReceiver` (and anything with its settlement methods, such as
the test broker) and with the Functions `ServiceBusMessageActions` of
azurefunctions-extensions-bindings-servicebus (`complete`, `abandon`, `deadletter`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from agents.backbone.errors import BackboneError, Disposition, classify
from agents.backbone.processing import Outcome

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


def settle(receiver: Settler, message: Any,
           work: Callable[[], Outcome[Any] | None]) -> Settlement:
    """Run `work` (parse + `MessageProcessor.handle`) and settle the message accordingly:
    poison -> dead-letter at once with reason; transient -> abandon (redelivery, and
    MaxDeliveryCount dead-letters in the end); success -> complete, or dead-letter when the
    handler asked for it (e.g. a saga's exhausted compensation). `work` returns None when
    the message needed no handling (complete)."""
    try:
        outcome = work()
    except Exception as error:
        if isinstance(error, BackboneError) and classify(error) is Disposition.DEAD_LETTER:
            dead_letter(receiver, message, error.reason, error.description)
            return Settlement.DEAD_LETTERED
        log.warning("abandoning message for redelivery: %s", error, exc_info=error)
        _abandon(receiver, message)
        return Settlement.ABANDONED
    if outcome is not None and outcome.dead_letter is not None:
        dead_letter(receiver, message, outcome.dead_letter.reason, outcome.dead_letter.description)
        return Settlement.DEAD_LETTERED
    _complete(receiver, message)
    return Settlement.COMPLETED
