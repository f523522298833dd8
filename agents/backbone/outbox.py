"""The outbox: rows written in the handler's transaction, then relayed to a `Publisher`.

Rows are published with MessageId = row id = event id, so the broker's duplicate detection
absorbs a re-send. `OutboxRelay.publish` (the message path) only REMEMBERS the published rows;
their "dispatched" marks ride in the partition's next unit-of-work transaction
(`take_marks`), or are flushed on their own once the partition has been idle for
`flush_after`. `dispatch` publishes and marks at once. Until a row is marked it stays pending
in the table, so `sweep` (the timer's safety net) republishes anything a crash left behind;
`purge` is retention.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from agents.backbone import telemetry
from agents.backbone.envelope import Envelope
from agents.backbone.errors import StorageError, TransientError
from agents.backbone.store import Operation, Store, StoredRow, TransactionRefused, Write
from agents.backbone.tables import (
    INBOX_PREFIX,
    OUTBOX_PREFIX,
    as_store,
    outbox_row,
    table_key,
)

if TYPE_CHECKING:
    from azure.data.tables import TableClient

    from agents.backbone.publishers import Publisher

PENDING = "pending"
DISPATCHED = "dispatched"
_BATCH = 100
# Bounds on what a relay remembers: beyond them the marks are written at once.
MAX_REMEMBERED_PER_PARTITION = 50
MAX_REMEMBERED_PARTITIONS = 1000

log = logging.getLogger(__name__)


@dataclass
class OutboxRow:
    """One outgoing event waiting in (or relayed from) a partition's outbox.

    `partition_key` is the stored (table-safe) key; see `tables.table_key`.
    """

    partition_key: str
    envelope: Envelope
    destination: str
    created_at: datetime
    scheduled_at: datetime | None = None
    status: str = PENDING
    etag: str | None = field(default=None, compare=False)

    @classmethod
    def new(
        cls, partition_key: str, envelope: Envelope, *, destination: str,
        scheduled_at: datetime | None, created_at: datetime,
    ) -> OutboxRow:
        """The envelope carries the current span's trace context (the handler's), if any."""
        return cls(partition_key, telemetry.stamp(envelope), destination, created_at,
                   scheduled_at)

    @property
    def row_key(self) -> str:
        return outbox_row(self.envelope.id)

    @property
    def message_id(self) -> str:
        """The broker MessageId: the event id, stable across re-sends."""
        return self.envelope.id

    def to_entity(self) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self.partition_key, "RowKey": self.row_key, "Kind": "outbox",
            "Status": self.status, "Destination": self.destination,
            "EventType": self.envelope.type, "Envelope": self.envelope.to_json(),
            "CreatedAt": self.created_at,
        }
        if self.scheduled_at is not None:
            entity["ScheduledAt"] = self.scheduled_at
        return entity

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any], etag: str | None = None) -> OutboxRow:
        """The row from its stored properties; `etag` defaults to a `TableEntity`'s own."""
        return cls(
            partition_key=entity["PartitionKey"],
            envelope=Envelope.from_dict(json.loads(entity["Envelope"])),
            destination=entity["Destination"],
            created_at=entity["CreatedAt"],
            scheduled_at=entity.get("ScheduledAt"),
            status=entity["Status"],
            etag=etag if etag is not None else getattr(entity, "metadata", {})["etag"],
        )

    @classmethod
    def from_stored(cls, row: StoredRow) -> OutboxRow:
        return cls.from_entity(row.entity, row.etag)


@dataclass(frozen=True)
class PurgeReport:
    inbox_markers: int
    dispatched_rows: int


@dataclass
class _Unmarked:
    """Rows of one partition published but not yet marked dispatched in the table."""

    since: datetime
    rows: dict[str, OutboxRow] = field(default_factory=dict)


class OutboxRelay:
    """Publishes outbox rows through a `Publisher` and records that they went out.

    Thread-safe: the remembered marks are guarded by a lock; storage calls run outside it.
    """

    def __init__(
        self, store: Store | TableClient, publisher: Publisher,
        *, now: Callable[[], datetime] | None = None,
        flush_after: timedelta = timedelta(seconds=10),
    ) -> None:
        self.store = as_store(store)
        self.publisher = publisher
        self.flush_after = flush_after
        self._now = now or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._unmarked: OrderedDict[str, _Unmarked] = OrderedDict()

    def pending(self, partition_key: str) -> list[OutboxRow]:
        """The partition's rows not yet marked dispatched, oldest first."""
        found = self.store.query(OUTBOX_PREFIX, partition_key=table_key(partition_key),
                                 equals={"Status": PENDING})
        return sorted(map(OutboxRow.from_stored, found), key=lambda row: row.created_at)

    def dispatch(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Publish `rows` (except those already published and remembered), then mark them
        all dispatched now. A publish failure propagates (`PublishFailed`) and leaves every row
        pending, so redelivery or the sweeper retries."""
        if not rows:
            return []
        remembered = self._forget(rows)
        self._publish([row for row in rows if id(row) not in remembered])
        self.mark_dispatched(rows)
        return list(rows)

    def publish(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Publish `rows` not already published, and remember them: their marks go into the
        partition's next transaction (`take_marks`) or a later `flush`. A publish failure
        propagates (`PublishFailed`) and remembers nothing."""
        with self._lock:
            fresh = [row for row in rows if not self._is_remembered(row)]
        if not fresh:
            return []
        self._publish(fresh)
        self._remember(fresh)
        return fresh

    def unmarked(self, partition_key: str) -> list[OutboxRow]:
        """Rows of the partition this relay published but has not marked dispatched yet."""
        with self._lock:
            entry = self._unmarked.get(table_key(partition_key))
            return list(entry.rows.values()) if entry else []

    def take_marks(self, table_partition: str) -> list[OutboxRow]:
        """Hand over (and forget) the partition's unmarked rows, for its next transaction;
        `give_back` those the transaction did not apply."""
        with self._lock:
            entry = self._unmarked.pop(table_partition, None)
        return list(entry.rows.values()) if entry else []

    def give_back(self, rows: Sequence[OutboxRow]) -> None:
        self._remember(rows)

    def flush(self, *, idle_for: timedelta | None = None) -> int:
        """Mark now the rows of partitions idle for at least `idle_for` (all when None);
        returns how many rows were marked."""
        cutoff = None if idle_for is None else self._now() - idle_for
        with self._lock:
            due: list[str] = []
            for key, entry in self._unmarked.items():  # oldest first: insertion order
                if cutoff is not None and entry.since > cutoff:
                    break
                due.append(key)
            rows = [row for key in due for row in self._unmarked.pop(key).rows.values()]
        self.mark_dispatched(rows)
        return len(rows)

    def flush_idle(self) -> None:
        """`flush(idle_for=flush_after)`, after a handled message. A storage failure here is
        logged and left to the sweeper: the message itself is already done."""
        try:
            self.flush(idle_for=self.flush_after)
        except (TransientError, StorageError) as error:
            log.warning("outbox marks left to the sweeper: %s", error)

    def mark_dispatched(self, rows: Iterable[OutboxRow]) -> None:
        """ETag-guarded; one transaction per partition. A row someone else already updated
        (the sweeper, a concurrent redelivery) is left as they wrote it."""
        by_partition: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_partition[row.partition_key].append(row)
        for group in by_partition.values():
            for start in range(0, len(group), _BATCH):
                self._mark_chunk(group[start:start + _BATCH])

    def sweep(self, *, older_than: timedelta = timedelta(minutes=1)) -> list[OutboxRow]:
        """Publish rows still pending after `older_than` (the timer trigger's job). This
        relay's own remembered marks are flushed first, so only other processes' tails (or
        crashes) are republished."""
        self.flush()
        cutoff = self._now() - older_than
        stale = [OutboxRow.from_stored(row) for row in self.store.query(
            OUTBOX_PREFIX, equals={"Status": PENDING}, before=("CreatedAt", cutoff))]
        stale.sort(key=lambda row: (row.partition_key, row.created_at))
        oldest = min((row.created_at for row in stale), default=None)
        telemetry.record_pending_age(
            self.store.name, 0.0 if oldest is None else (self._now() - oldest).total_seconds())
        return self.dispatch(stale)

    def purge(self, *, older_than: timedelta) -> PurgeReport:
        """Retention: delete inbox markers and dispatched rows older than `older_than`.

        Pending rows and state are never deleted. Keep `older_than` longer than the longest
        redelivery window, or a very late duplicate would no longer be recognised.
        """
        cutoff = self._now() - older_than
        markers = self.store.query(INBOX_PREFIX, before=("ReceivedAt", cutoff))
        dispatched = self.store.query(OUTBOX_PREFIX, equals={"Status": DISPATCHED},
                                      before=("DispatchedAt", cutoff))
        self._delete(markers + dispatched)
        return PurgeReport(inbox_markers=len(markers), dispatched_rows=len(dispatched))

    def close(self) -> None:
        """Write the marks this relay still remembers. The table and the publisher stay open:
        they belong to whoever built the relay (several relays may share them)."""
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _publish(self, rows: list[OutboxRow]) -> None:
        if not rows:
            return
        self.publisher.publish(rows)
        now = self._now()
        for row in rows:
            telemetry.record_dispatch_age(row.destination,
                                          (now - row.created_at).total_seconds())

    def _is_remembered(self, row: OutboxRow) -> bool:
        entry = self._unmarked.get(row.partition_key)
        return entry is not None and row.row_key in entry.rows

    def _remember(self, rows: Iterable[OutboxRow]) -> None:
        overflow: list[OutboxRow] = []
        with self._lock:
            for row in rows:
                entry = self._unmarked.get(row.partition_key)
                if entry is None:
                    entry = self._unmarked[row.partition_key] = _Unmarked(self._now())
                entry.rows.setdefault(row.row_key, row)
                if len(entry.rows) > MAX_REMEMBERED_PER_PARTITION:
                    overflow += self._unmarked.pop(row.partition_key).rows.values()
            while len(self._unmarked) > MAX_REMEMBERED_PARTITIONS:
                overflow += self._unmarked.popitem(last=False)[1].rows.values()
        self.mark_dispatched(overflow)

    def _forget(self, rows: Iterable[OutboxRow]) -> set[int]:
        """Drop `rows` from memory; the ids of those that were remembered (published)."""
        forgotten: set[int] = set()
        with self._lock:
            for row in rows:
                entry = self._unmarked.get(row.partition_key)
                if entry is not None and entry.rows.pop(row.row_key, None) is not None:
                    forgotten.add(id(row))
                    if not entry.rows:
                        del self._unmarked[row.partition_key]
        return forgotten

    def _mark_chunk(self, chunk: list[OutboxRow]) -> None:
        now = self._now()
        try:
            etags = self.store.submit([mark_operation(row, now) for row in chunk])
        except TransactionRefused:
            self._mark_one_by_one(chunk, now)
            return
        for row, etag in zip(chunk, etags, strict=True):
            row.status, row.etag = DISPATCHED, etag

    def _mark_one_by_one(self, chunk: list[OutboxRow], now: datetime) -> None:
        for row in chunk:
            try:
                [etag] = self.store.submit([mark_operation(row, now)])
            except TransactionRefused:  # marked by someone else meanwhile, or purged
                continue
            row.status, row.etag = DISPATCHED, etag

    def _delete(self, found: list[StoredRow]) -> None:
        by_partition: dict[str, list[StoredRow]] = defaultdict(list)
        for row in found:
            by_partition[row.entity["PartitionKey"]].append(row)
        for group in by_partition.values():
            for start in range(0, len(group), _BATCH):
                self.store.submit([
                    Operation(Write.DELETE, {"PartitionKey": row.entity["PartitionKey"],
                                             "RowKey": row.entity["RowKey"]}, row.etag)
                    for row in group[start:start + _BATCH]
                ])


def mark_operation(row: OutboxRow, now: datetime) -> Operation:
    """The "dispatched" MERGE for `row`, guarded by the ETag its insert returned: if anyone
    changed the row since (only a sweeper or redelivery marking it too), or retention deleted
    it, the store refuses and the mark is simply dropped by the caller."""
    patch = {"PartitionKey": row.partition_key, "RowKey": row.row_key,
             "Status": DISPATCHED, "DispatchedAt": now}
    return Operation(Write.MERGE, patch, row.etag)
