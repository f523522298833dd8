"""Azure errors map onto the backbone's named errors; poison vs transient."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)

from agents.backbone import (
    ConcurrencyConflict,
    Disposition,
    InvalidEvent,
    PublishFailed,
    StorageError,
    StorageUnavailable,
    TransactionTooLarge,
    classify,
)
from agents.backbone.errors import map_storage_error


def http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(("error", "expected"), [
    (ResourceModifiedError(message="etag"), ConcurrencyConflict),
    (http_error(412), ConcurrencyConflict),
    (http_error(503), StorageUnavailable),
    (http_error(500), StorageUnavailable),
    (http_error(429), StorageUnavailable),
    (http_error(408), StorageUnavailable),
    (ServiceRequestError("connection refused"), StorageUnavailable),
    (ServiceResponseError("read timed out"), StorageUnavailable),
    (http_error(413), TransactionTooLarge),
    (http_error(403), StorageError),
])
def test_storage_errors_map_to_named_exceptions(error, expected):
    assert type(map_storage_error(error)) is expected


@pytest.mark.parametrize(("error", "disposition"), [
    (InvalidEvent("bad"), Disposition.DEAD_LETTER),
    (TransactionTooLarge("big"), Disposition.DEAD_LETTER),
    (StorageUnavailable("503"), Disposition.RETRY),
    (ConcurrencyConflict("412"), Disposition.RETRY),
    (PublishFailed("down"), Disposition.RETRY),
    (RuntimeError("a bug"), Disposition.RETRY),
])
def test_poison_is_dead_lettered_and_everything_else_retried(error, disposition):
    assert classify(error) is disposition


def test_errors_carry_a_reason_and_a_description():
    error = InvalidEvent("data invalid at orderId", reason="SchemaViolation")
    assert (error.reason, error.description) == ("SchemaViolation", "data invalid at orderId")
    assert StorageUnavailable("x").reason == "StorageUnavailable"
