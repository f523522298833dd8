"""Settle after dispatch: handle in one transaction, publish, and only then let the trigger
complete the message.

The happy path is one read and one transaction per message: the published rows are marked
dispatched in the partition's NEXT transaction (or by the relay's idle flush); until then they
stay pending in the table, where the sweeper finds them if this process dies.

A trigger calls `MessageProcessor.handle(event, handler)`. If it returns, the message may be
completed (or dead-lettered, when `Outcome.dead_letter` says so). If it raises, the message
must be abandoned so the broker redelivers it: the inbox then recognises the duplicate, the
partition's pending outbox rows that this process has not published yet are published, and
the `Outcome` carries the disposition the first delivery committed (so a message whose
dead-letter settlement was lost is dead-lettered on redelivery, with the same reason).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar

from agents.backbone import telemetry
from agents.backbone.envelope import Envelope
from agents.backbone.errors import BackboneError, Disposition, InvalidEvent, classify
from agents.backbone.outbox import OutboxRelay, OutboxRow
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import Store
from agents.backbone.tables import RequestCounter, TableStore, as_store, table_key
from agents.backbone.unit_of_work import (
    Committed,
    DeadLetterRequest,
    UnitOfWork,
    run_unit_of_work,
)

if TYPE_CHECKING:
    from azure.data.tables import TableClient

T = TypeVar("T")

Handler = Callable[[Envelope, UnitOfWork], T]
"""A plain function: load the aggregate, decide, `save` and `emit` on the unit of work."""


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What handling one message did; `published` are its outbox rows (sent now, or before
    for a duplicate); `requests` counts storage calls when counted."""

    partition_key: str
    duplicate: bool
    published: list[OutboxRow] = field(default_factory=list)
    result: T | None = None
    dead_letter: DeadLetterRequest | None = None
    requests: int | None = None


class MessageProcessor:
    """Runs handlers in a unit of work over `store` (a `Store`: `TableStore` or `MemoryStore`;
    a bare `TableClient` gets the Table adapter) and relays their outbox before settlement."""

    def __init__(
        self,
        store: Store | TableClient,
        relay: OutboxRelay,
        *,
        registry: SchemaRegistry,
        attempts: int = 6,
        counter: RequestCounter | None = None,
        now: Callable[[], datetime] | None = None,
        name: str | None = None,
    ) -> None:
        self.store = as_store(store)
        self.name = name or self.store.name  # the function, in spans and metrics
        self.relay = relay
        self.registry = registry
        self.attempts = attempts
        self.counter = counter
        self._now = now

    @property
    def table(self) -> TableClient:
        """The Table adapter's client, for readers not yet on the store port."""
        if not isinstance(self.store, TableStore):
            raise TypeError(f"store {self.store.name} is not a Table; use processor.store")
        return self.store.table

    def handle(
        self, event: Envelope, handler: Handler[T], *, partition_key: str | None = None,
    ) -> Outcome[T]:
        """Handle one incoming event exactly once in effect; see the module docstring.

        The partition is `partition_key`, else the event's `partitionkey`, else `subject`.
        """
        partition = partition_key or event.partitionkey or event.subject
        if not partition:
            error = InvalidEvent(f"event {event.id} names no partition key or subject",
                                 reason="NoPartitionKey")
            telemetry.count_dead_letter(self.name, error.reason)
            raise error
        return self.run(partition, lambda uow: handler(event, uow), inbox_id=event.id,
                        event=event)

    def run(
        self, partition_key: str, decide: Callable[[UnitOfWork], T], *, inbox_id: str | None,
        event: Envelope | None = None,
    ) -> Outcome[T]:
        """The general form: `inbox_id` is the message id (or an HTTP idempotency key).

        It runs in one span (a consumer span continuing `event`'s trace when there is one) and
        counts its outcome per `name`."""
        with telemetry.handling(self.name, event):
            try:
                if self.counter is None:
                    outcome = self._run(partition_key, decide, inbox_id)
                else:
                    with self.counter.scope() as scope:
                        outcome = replace(self._run(partition_key, decide, inbox_id),
                                          requests=scope.count)
            except BackboneError as error:
                if classify(error) is Disposition.DEAD_LETTER:
                    telemetry.count_dead_letter(self.name, error.reason)
                raise
        telemetry.count_outcome(self.name, duplicate=outcome.duplicate,
                                dead_lettered=outcome.dead_letter is not None)
        return outcome

    def _run(
        self, partition_key: str, decide: Callable[[UnitOfWork], T], inbox_id: str | None,
    ) -> Outcome[T]:
        marks = self.relay.take_marks(table_key(partition_key))
        try:
            committed: Committed[T] = run_unit_of_work(
                self.store, partition_key, decide, inbox_id=inbox_id, attempts=self.attempts,
                registry=self.registry, now=self._now, marks=marks,
            )
        except BaseException:
            self.relay.give_back(marks)
            raise
        self.relay.give_back(committed.unapplied_marks)
        rows = self.relay.pending(partition_key) if committed.duplicate else committed.outbox
        self.relay.publish(rows)
        self.relay.flush_idle()
        return Outcome(partition_key, committed.duplicate, rows, committed.result,
                       committed.dead_letter)


class Closeable(Protocol):
    def close(self) -> None: ...


class Composed:
    """What an agent's `bootstrap` returns (a frozen dataclass with an `owned` field): leaving
    it writes its relays' remembered marks, then closes the clients it opened, in order;
    `build` leaves the adapters it was given to their owner (`owned=()`)."""

    owned: Sequence[Closeable]

    @property
    def processors(self) -> list[MessageProcessor]:
        raise NotImplementedError

    def close(self) -> None:
        for processor in self.processors:
            processor.relay.close()
        for client in self.owned:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
