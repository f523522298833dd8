"""One exception hierarchy for the backbone; every Azure failure is mapped onto it.

Two families decide what a trigger does with the incoming message:
`PoisonMessage` (dead-letter at once, retrying cannot help) and `TransientError`
(raise, so the broker redelivers; MaxDeliveryCount dead-letters in the end).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

# azure-core loads with the first SDK client, not at import (cold start): an Azure error
# to map means it is loaded.
if TYPE_CHECKING:
    from azure.core.exceptions import AzureError


class BackboneError(Exception):
    """Base of every error the backbone raises; `reason` is short, `description` says more."""

    reason: str = "BackboneError"

    def __init__(self, description: str, *, reason: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        if reason is not None:
            self.reason = reason


class PoisonMessage(BackboneError):
    """The message can never be handled as it is: dead-letter it at once with the reason."""

    reason = "PoisonMessage"


class InvalidEvent(PoisonMessage):
    """The input is not a valid CloudEvent of a registered type (schema, envelope, encoding)."""

    reason = "InvalidEvent"


class TransactionTooLarge(PoisonMessage):
    """One handled message would need more than one entity-group transaction can hold."""

    reason = "TransactionTooLarge"


class TransientError(BackboneError):
    """Retrying later may succeed: raise so the broker redelivers the message."""

    reason = "TransientError"


class StorageUnavailable(TransientError):
    """Table Storage answered 5xx, throttled (429/503), or the call timed out."""

    reason = "StorageUnavailable"


class ConcurrencyConflict(TransientError):
    """An ETag-guarded write lost the race (412), also after the bounded retries."""

    reason = "ConcurrencyConflict"


class PublishFailed(TransientError):
    """The broker refused or did not acknowledge a send; the outbox rows stay pending."""

    reason = "PublishFailed"


class RetryLater(TransientError):
    """Not now: a downstream refuses (an open breaker, a throttle) or is slow. The message is
    tried again after `retry_after` seconds, not at once: a Service Bus trigger's `settle`
    schedules a copy (`settlement.ScheduledRetry`); elsewhere it is a transient error."""

    reason = "RetryLater"

    def __init__(self, description: str, *, retry_after: float,
                 reason: str | None = None) -> None:
        super().__init__(description, reason=reason)
        self.retry_after = max(0.0, retry_after)


class StorageError(BackboneError):
    """Table Storage rejected the request for a reason that is neither transient nor a race."""

    reason = "StorageError"


class ConfigurationError(BackboneError):
    """A connection setting is missing or malformed."""

    reason = "ConfigurationError"


class Disposition(enum.Enum):
    """What a trigger does with a message whose handling raised."""

    DEAD_LETTER = "dead-letter"
    RETRY = "retry"


_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def classify(error: BaseException) -> Disposition:
    """Poison errors are dead-lettered at once; anything else is retried by redelivery.

    Unknown exceptions count as transient on purpose: the broker's MaxDeliveryCount still
    dead-letters a bug that fails every time, so nothing is retried forever.
    """
    return Disposition.DEAD_LETTER if isinstance(error, PoisonMessage) else Disposition.RETRY


def map_storage_error(error: AzureError) -> BackboneError:
    """Translate an azure-core / azure-data-tables exception into a backbone exception."""
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceModifiedError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(error, ResourceModifiedError):
        return ConcurrencyConflict(f"ETag mismatch: {_first_line(error)}")
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return StorageUnavailable(f"storage unreachable: {_first_line(error)}")
    if isinstance(error, HttpResponseError):
        status = error.status_code or 0
        if status == 412:
            return ConcurrencyConflict(f"ETag mismatch: {_first_line(error)}")
        if status in _TRANSIENT_STATUS:
            return StorageUnavailable(f"storage answered {status}: {_first_line(error)}")
        if status == 413:
            return TransactionTooLarge(f"storage answered 413: {_first_line(error)}")
        return StorageError(f"storage answered {status}: {_first_line(error)}")
    return StorageUnavailable(f"storage call failed: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
