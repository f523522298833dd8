"""The unit of work: state + inbox marker + outbox rows in ONE transaction, over any `Store`.

A handler loads the aggregate (remembering its ETag), stages the new state and the events to
send, and `commit()` submits one transaction whose first operation inserts the inbox marker
for the incoming message id; the same transaction carries, as room allows, the "dispatched"
marks of rows published after the partition's previous commit (`marks`).
A duplicate delivery makes that insert fail, so the whole transaction is rejected and
`Committed.duplicate` is True: no second effect. The marker records the disposition decided
for the message (complete, or dead-letter with reason and description); a duplicate reads it
back (one point read, on the duplicate path only) so a redelivery after a lost settlement is
settled the same way. A stale ETag (412) on the state row raises `ConcurrencyConflict`;
`run_unit_of_work` reloads and re-decides with bounded, jittered retries.

The store is the port (`store.py`): `tables.TableStore` in production (a bare `TableClient`
is accepted and wrapped), `memory.MemoryStore` in unit tests::

    store = MemoryStore()
    committed = run_unit_of_work(store, "order-1", lambda uow: handler(event, uow),
                                 inbox_id=event.id, registry=schemas)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agents.backbone.envelope import Envelope
from agents.backbone.errors import ConcurrencyConflict, TransactionTooLarge
from agents.backbone.outbox import OutboxRow, mark_operation
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import (
    MAX_ENTITIES,
    Operation,
    Refusal,
    Store,
    TransactionRefused,
    Write,
    check_transaction_limits,
)
from agents.backbone.tables import STATE_ROW, as_store, inbox_row, table_key

if TYPE_CHECKING:  # the Tables SDK and tenacity load on first use (cold start)
    from azure.data.tables import TableClient

# The inbox marker's `Disposition`: what settling the message must do, on every delivery.
COMPLETE = "complete"
DEAD_LETTER = "dead-letter"

T = TypeVar("T")


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
        store: Store | TableClient,
        partition_key: str,
        *,
        inbox_id: str | None,
        registry: SchemaRegistry,
        now: Callable[[], datetime] | None = None,
        marks: Sequence[OutboxRow] = (),
    ) -> None:
        if not partition_key:
            raise ValueError("a unit of work needs a partition key")
        self.store = as_store(store)
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
            row = self.store.get(self.table_partition, row_key)
            self._loaded[row_key] = (
                _Loaded(None, None) if row is None
                else _Loaded(json.loads(row.entity["state"]), row.etag))
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
            operations.append(Operation(Write.INSERT, {
                "PartitionKey": self.table_partition, "RowKey": inbox_row(self.inbox_id),
                "Kind": "inbox", "ReceivedAt": now, **_disposition(self.dead_letter),
            }))
        for row_key, state in self._saved.items():
            entity = {
                "PartitionKey": self.table_partition, "RowKey": row_key, "Kind": "state",
                "state": json.dumps(state, separators=(",", ":"), default=str),
                "UpdatedAt": now,
            }
            loaded = self._loaded.get(row_key)
            if loaded is None or loaded.etag is None:
                operations.append(Operation(Write.INSERT, entity))
            else:
                operations.append(Operation(Write.REPLACE, entity, loaded.etag))
        operations.extend(Operation(Write.INSERT, {**row, "Kind": "log"})
                          for row in self._appended)
        operations.extend(Operation(Write.INSERT, row.to_entity()) for row in self._outbox)
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
                etags = self.store.submit(
                    operations + [mark_operation(row, now) for row in marks])
                break
            except TransactionRefused as refused:
                if self._is_duplicate(refused, operations):
                    return Committed(self.partition_key, duplicate=True,
                                     dead_letter=self._recorded_dead_letter(),
                                     unapplied_marks=list(self._marks))
                if refused.index >= len(operations) and refused.refusal is not Refusal.EXISTS:
                    del marks[refused.index - len(operations)]
                    continue
                raise ConcurrencyConflict(
                    f"partition {self.partition_key}: operation {refused.index} lost a "
                    f"race ({refused.refusal.value})"
                ) from refused
        # The outbox inserts end the business operations; their ETags guard the later
        # "dispatched" mark without another read.
        first = len(operations) - len(self._outbox)
        for row, etag in zip(self._outbox, etags[first:len(operations)], strict=True):
            row.etag = etag
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
        marker = self.store.get(self.table_partition, inbox_row(self.inbox_id))
        if marker is None:  # purged since the insert was refused: decide anew
            raise ConcurrencyConflict(f"inbox marker {self.inbox_id} vanished")
        if marker.entity.get("Disposition") != DEAD_LETTER:
            return None
        return DeadLetterRequest(marker.entity["DeadLetterReason"],
                                 marker.entity["DeadLetterDescription"])

    def _is_duplicate(self, refused: TransactionRefused, operations: list[Operation]) -> bool:
        return (
            self.inbox_id is not None
            and refused.index == 0
            and refused.refusal is Refusal.EXISTS
            and operations[0].row_key == inbox_row(self.inbox_id)
        )


def _disposition(dead_letter: DeadLetterRequest | None) -> dict[str, str]:
    if dead_letter is None:
        return {"Disposition": COMPLETE}
    return {"Disposition": DEAD_LETTER, "DeadLetterReason": dead_letter.reason,
            "DeadLetterDescription": dead_letter.description}


def run_unit_of_work(
    store: Store | TableClient,
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
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_random_exponential,
    )

    retrying = Retrying(
        retry=retry_if_exception_type(ConcurrencyConflict),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.02, max=1.0),
        reraise=True,
    )

    def attempt() -> Committed[T]:
        uow = UnitOfWork(store, partition_key, inbox_id=inbox_id, registry=registry, now=now,
                         marks=marks)
        result = decide(uow)
        committed = uow.commit()
        return Committed(
            committed.partition_key, committed.duplicate, committed.outbox,
            None if committed.duplicate else result, committed.dead_letter,
            committed.unapplied_marks,
        )

    return retrying(attempt)
