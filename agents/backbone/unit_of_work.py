"""The Table-backed unit of work: state + inbox marker + outbox rows in ONE transaction.

A handler loads the aggregate (remembering its ETag), stages the new state and the events to
send, and `commit()` submits one entity-group transaction whose first operation inserts the
inbox marker for the incoming message id; the same transaction carries, as room allows, the
"dispatched" marks of rows published after the partition's previous commit (`marks`).
A duplicate delivery makes that insert fail, so the whole transaction is rejected and
`Committed.duplicate` is True: no second effect. The marker records the disposition decided
for the message (complete, or dead-letter with reason and description); a duplicate reads it
back (one point read, on the duplicate path only) so a redelivery after a lost settlement is
settled the same way. A stale ETag (412) on the state row raises
`ConcurrencyConflict`; `run_unit_of_work` reloads and re-decides with bounded, jittered
retries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from agents.backbone.envelope import Envelope
from agents.backbone.errors import ConcurrencyConflict, TransactionTooLarge, map_storage_error
from agents.backbone.outbox import OutboxRow, mark_operation
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.tables import STATE_ROW, inbox_row, table_key

MAX_ENTITIES = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTY_BYTES = 64 * 1024
# Multipart headers around each operation in the $batch body (measured: ~400 bytes).
_PER_OPERATION_OVERHEAD = 512

# The inbox marker's `Disposition`: what settling the message must do, on every delivery.
COMPLETE = "complete"
DEAD_LETTER = "dead-letter"

T = TypeVar("T")
Operation = tuple[str, dict[str, Any], dict[str, Any]]


@dataclass(frozen=True)
class DeadLetterRequest:
    """The handler asks that, after commit and dispatch, the message be dead-lettered."""

    reason: str
    description: str


@dataclass(frozen=True)
class Committed(Generic[T]):
    """What one unit of work did: `duplicate` means the inbox already had this message."""

    partition_key: str
    duplicate: bool
    outbox: list[OutboxRow] = field(default_factory=list)
    result: T | None = None
    dead_letter: DeadLetterRequest | None = None
    unapplied_marks: list[OutboxRow] = field(default_factory=list)
    """The `marks` still to be written: no room in this transaction, or it was a duplicate.
    (A mark the service refused is dropped: its row was already marked or purged.)"""


@dataclass
class _Loaded:
    state: dict[str, Any] | None
    etag: str | None


class UnitOfWork:
    """One partition's pending changes. Not thread-safe; one per handled message attempt."""

    def __init__(
        self,
        table: TableClient,
        partition_key: str,
        *,
        inbox_id: str | None,
        registry: SchemaRegistry,
        now: Callable[[], datetime] | None = None,
        marks: Sequence[OutboxRow] = (),
    ) -> None:
        if not partition_key:
            raise ValueError("a unit of work needs a partition key")
        self.table = table
        self.partition_key = partition_key
        self.table_partition = table_key(partition_key)
        self.inbox_id = inbox_id
        self._registry = registry
        self._now = now or (lambda: datetime.now(UTC))
        self._loaded: dict[str, _Loaded] = {}
        self._saved: dict[str, dict[str, Any]] = {}
        self._appended: list[dict[str, Any]] = []
        self._outbox: list[OutboxRow] = []
        self._marks = list(marks)
        self.dead_letter: DeadLetterRequest | None = None

    def now(self) -> datetime:
        return self._now()

    def load(self, row_key: str = STATE_ROW) -> dict[str, Any] | None:
        """The aggregate's state (a JSON object) or None if it does not exist yet."""
        if row_key in self._saved:
            return dict(self._saved[row_key])
        if row_key not in self._loaded:
            try:
                entity = self.table.get_entity(self.table_partition, row_key)
            except ResourceNotFoundError:
                self._loaded[row_key] = _Loaded(None, None)
                return None
            except AzureError as error:
                raise map_storage_error(error) from error
            self._loaded[row_key] = _Loaded(
                json.loads(entity["state"]), entity.metadata["etag"]
            )
        loaded = self._loaded[row_key]
        return None if loaded.state is None else dict(loaded.state)

    def save(self, state: Mapping[str, Any], row_key: str = STATE_ROW) -> None:
        """Stage the new state: an update guarded by the loaded ETag, or an insert if new.

        Call `load` first; saving a row never loaded is an insert (it must not exist).
        """
        self._saved[row_key] = dict(state)

    def append(self, row_key: str, values: Mapping[str, Any]) -> None:
        """Stage the insert of an extra row in this partition (e.g. a saga step-log entry)."""
        self._appended.append({"PartitionKey": self.table_partition, "RowKey": row_key, **values})

    def emit(
        self,
        envelope: Envelope,
        *,
        destination: str,
        scheduled_at: datetime | None = None,
    ) -> OutboxRow:
        """Stage an outgoing event (validated against its schema) as an outbox row.

        `destination` names the queue/topic/hub/topic-endpoint the publisher routes to;
        `scheduled_at` becomes the Service Bus scheduled enqueue time (deadlines).
        """
        self._registry.validate(envelope)
        row = OutboxRow.new(
            self.table_partition, envelope, destination=destination,
            scheduled_at=scheduled_at, created_at=self._now(),
        )
        self._outbox.append(row)
        return row

    def request_dead_letter(self, reason: str, description: str) -> None:
        """After commit and dispatch, dead-letter the incoming message instead of completing."""
        self.dead_letter = DeadLetterRequest(reason, description)

    @property
    def staged_outbox(self) -> list[OutboxRow]:
        return list(self._outbox)

    def operations(self) -> list[Operation]:
        """The transaction, inbox insert FIRST so a duplicate is what the service reports."""
        now = self._now()
        operations: list[Operation] = []
        if self.inbox_id is not None:
            operations.append(("create", {
                "PartitionKey": self.table_partition, "RowKey": inbox_row(self.inbox_id),
                "Kind": "inbox", "ReceivedAt": now, **_disposition(self.dead_letter),
            }, {}))
        for row_key, state in self._saved.items():
            entity = {
                "PartitionKey": self.table_partition, "RowKey": row_key, "Kind": "state",
                "state": json.dumps(state, separators=(",", ":"), default=str),
                "UpdatedAt": now,
            }
            loaded = self._loaded.get(row_key)
            if loaded is None or loaded.etag is None:
                operations.append(("create", entity, {}))
            else:
                operations.append(("update", entity, {
                    "mode": UpdateMode.REPLACE, "etag": loaded.etag,
                    "match_condition": MatchConditions.IfNotModified,
                }))
        operations.extend(("create", {**row, "Kind": "log"}, {}) for row in self._appended)
        operations.extend(("create", row.to_entity(), {}) for row in self._outbox)
        return operations

    def commit(self) -> Committed[Any]:
        """Submit the one transaction; recognise a duplicate delivery; raise on a lost race.

        The marks that fit within the limits ride along; one the service refuses (its row was
        changed or deleted since: already marked elsewhere, or purged) is dropped and the
        transaction resubmitted without it."""
        operations = self.operations()
        check_transaction_limits(operations)
        if not operations:
            return Committed(self.partition_key, duplicate=False, dead_letter=self.dead_letter,
                             unapplied_marks=list(self._marks))
        placed = self._marks_that_fit(operations)
        marks = list(placed)
        while True:
            now = self._now()
            try:
                results = self.table.submit_transaction(
                    operations + [mark_operation(row, now) for row in marks])
                break
            except TableTransactionError as error:
                if self._is_duplicate(error, operations):
                    return Committed(self.partition_key, duplicate=True,
                                     dead_letter=self._recorded_dead_letter(),
                                     unapplied_marks=list(self._marks))
                if error.index >= len(operations) and _refused_mark(error):
                    del marks[error.index - len(operations)]
                    continue
                if error.status_code in (409, 412) or _error_code(error) in (
                    "EntityAlreadyExists", "UpdateConditionNotSatisfied", "ResourceNotFound"
                ):
                    raise ConcurrencyConflict(
                        f"partition {self.partition_key}: operation {error.index} lost a "
                        f"race ({_error_code(error)})"
                    ) from error
                raise map_storage_error(error) from error
            except AzureError as error:
                raise map_storage_error(error) from error
        # The outbox inserts end the business operations; their ETags guard the later
        # "dispatched" mark without another read.
        first = len(operations) - len(self._outbox)
        for row, metadata in zip(self._outbox, results[first:len(operations)], strict=True):
            row.etag = metadata.get("etag")
        return Committed(
            self.partition_key, duplicate=False, outbox=list(self._outbox),
            dead_letter=self.dead_letter, unapplied_marks=self._marks[len(placed):],
        )

    def _marks_that_fit(self, operations: list[Operation]) -> list[OutboxRow]:
        room = max(0, MAX_ENTITIES - len(operations))
        marks = self._marks[:room]
        try:
            check_transaction_limits(operations + [mark_operation(r, self._now()) for r in marks])
        except TransactionTooLarge:
            return []
        return marks

    def _recorded_dead_letter(self) -> DeadLetterRequest | None:
        """The disposition the first delivery committed, from its inbox marker."""
        assert self.inbox_id is not None
        try:
            marker = self.table.get_entity(self.table_partition, inbox_row(self.inbox_id))
        except ResourceNotFoundError as error:  # purged since the insert failed: decide anew
            raise ConcurrencyConflict(f"inbox marker {self.inbox_id} vanished") from error
        except AzureError as error:
            raise map_storage_error(error) from error
        if marker.get("Disposition") != DEAD_LETTER:
            return None
        return DeadLetterRequest(marker["DeadLetterReason"], marker["DeadLetterDescription"])

    def _is_duplicate(self, error: TableTransactionError, operations: list[Operation]) -> bool:
        return (
            self.inbox_id is not None
            and error.index == 0
            and _error_code(error) == "EntityAlreadyExists"
            and operations[0][1]["RowKey"] == inbox_row(self.inbox_id)
        )


def _disposition(dead_letter: DeadLetterRequest | None) -> dict[str, str]:
    if dead_letter is None:
        return {"Disposition": COMPLETE}
    return {"Disposition": DEAD_LETTER, "DeadLetterReason": dead_letter.reason,
            "DeadLetterDescription": dead_letter.description}


def check_transaction_limits(operations: list[Operation]) -> None:
    """Raise `TransactionTooLarge` (naming the limit) before the service would refuse."""
    if len(operations) > MAX_ENTITIES:
        raise TransactionTooLarge(
            f"{len(operations)} entities in one transaction; the limit is {MAX_ENTITIES}"
        )
    total = 0
    for _, entity, _ in operations:
        size = 0
        for name, value in entity.items():
            value_bytes = _property_bytes(value)
            if value_bytes > MAX_PROPERTY_BYTES:
                raise TransactionTooLarge(
                    f"property {name} of row {entity['RowKey']} is {value_bytes} bytes; "
                    f"the limit is {MAX_PROPERTY_BYTES}"
                )
            size += len(name) * 2 + value_bytes
        if size > MAX_ENTITY_BYTES:
            raise TransactionTooLarge(
                f"row {entity['RowKey']} is {size} bytes; the limit is {MAX_ENTITY_BYTES}"
            )
        total += len(json.dumps(entity, default=str).encode("utf-8")) + _PER_OPERATION_OVERHEAD
    if total > MAX_TRANSACTION_BYTES:
        raise TransactionTooLarge(
            f"transaction payload is about {total} bytes; the limit is {MAX_TRANSACTION_BYTES}"
        )


def _property_bytes(value: object) -> int:
    # The service stores strings as UTF-16; that is what its 64 KiB property limit counts.
    if isinstance(value, str):
        return len(value.encode("utf-16-le"))
    if isinstance(value, bytes):
        return len(value)
    return 8


def run_unit_of_work(
    table: TableClient,
    partition_key: str,
    decide: Callable[[UnitOfWork], T],
    *,
    inbox_id: str | None,
    attempts: int = 6,
    registry: SchemaRegistry,
    now: Callable[[], datetime] | None = None,
    marks: Sequence[OutboxRow] = (),
) -> Committed[T]:
    """Load-decide-commit in a fresh unit of work, re-deciding after every 412; `marks`
    (rows published earlier in this partition) ride along in the transaction as room allows.

    Retries are bounded (`attempts`) with jittered exponential backoff; after the last one
    `ConcurrencyConflict` propagates (transient: the broker redelivers).
    """
    retrying = Retrying(
        retry=retry_if_exception_type(ConcurrencyConflict),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.02, max=1.0),
        reraise=True,
    )

    def attempt() -> Committed[T]:
        uow = UnitOfWork(table, partition_key, inbox_id=inbox_id, registry=registry, now=now,
                         marks=marks)
        result = decide(uow)
        committed = uow.commit()
        return Committed(
            committed.partition_key, committed.duplicate, committed.outbox,
            None if committed.duplicate else result, committed.dead_letter,
            committed.unapplied_marks,
        )

    return retrying(attempt)


def _refused_mark(error: TableTransactionError) -> bool:
    return error.status_code in (404, 412) or _error_code(error) in (
        "UpdateConditionNotSatisfied", "ResourceNotFound")


def _error_code(error: TableTransactionError) -> str:
    # The SDK sets `error_code` at runtime but does not declare it on the class.
    return str(getattr(error, "error_code", ""))
