"""The outbox: rows written in the handler's transaction, then relayed to a `Publisher`.

`OutboxRelay.dispatch` publishes rows (MessageId = row id = event id, so the broker's
duplicate detection absorbs a re-send) and then marks them dispatched with an ETag-guarded
update. `sweep` is the timer's safety net for rows left pending; `purge` is retention.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from agents.backbone.envelope import Envelope
from agents.backbone.errors import map_storage_error
from agents.backbone.tables import (
    INBOX_PREFIX,
    OUTBOX_PREFIX,
    outbox_row,
    prefix_filter,
    quote,
    storage_call,
    table_key,
)

if TYPE_CHECKING:
    from agents.backbone.publishers import Publisher

PENDING = "pending"
DISPATCHED = "dispatched"
_BATCH = 100


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
        return cls(partition_key, envelope, destination, created_at, scheduled_at)

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
    def from_entity(cls, entity: Any) -> OutboxRow:
        return cls(
            partition_key=entity["PartitionKey"],
            envelope=Envelope.from_dict(json.loads(entity["Envelope"])),
            destination=entity["Destination"],
            created_at=entity["CreatedAt"],
            scheduled_at=entity.get("ScheduledAt"),
            status=entity["Status"],
            etag=entity.metadata["etag"],
        )


@dataclass(frozen=True)
class PurgeReport:
    inbox_markers: int
    dispatched_rows: int


class OutboxRelay:
    """Publishes outbox rows through a `Publisher` and records that they went out."""

    def __init__(
        self, table: TableClient, publisher: Publisher,
        *, now: Callable[[], datetime] | None = None,
    ) -> None:
        self.table = table
        self.publisher = publisher
        self._now = now or (lambda: datetime.now(UTC))

    def pending(self, partition_key: str) -> list[OutboxRow]:
        """The partition's rows not yet marked dispatched, oldest first."""
        query = (f"PartitionKey eq {quote(table_key(partition_key))}"
                 f" and {prefix_filter(OUTBOX_PREFIX)}"
                 f" and Status eq '{PENDING}'")
        rows = [OutboxRow.from_entity(e) for e in self._query(query)]
        return sorted(rows, key=lambda row: row.created_at)

    def dispatch(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Publish `rows`, then mark them dispatched. A publish failure propagates
        (`PublishFailed`) and leaves every row pending, so redelivery or the sweeper retries."""
        if not rows:
            return []
        self.publisher.publish(rows)
        self.mark_dispatched(rows)
        return list(rows)

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
        """Publish rows still pending after `older_than` (the timer trigger's job)."""
        cutoff = self._now() - older_than
        query = (f"{prefix_filter(OUTBOX_PREFIX)} and Status eq '{PENDING}'"
                 " and CreatedAt lt @cutoff")
        stale = [OutboxRow.from_entity(e) for e in self._query(query, cutoff=cutoff)]
        stale.sort(key=lambda row: (row.partition_key, row.created_at))
        return self.dispatch(stale)

    def purge(self, *, older_than: timedelta) -> PurgeReport:
        """Retention: delete inbox markers and dispatched rows older than `older_than`.

        Pending rows and state are never deleted. Keep `older_than` longer than the longest
        redelivery window, or a very late duplicate would no longer be recognised.
        """
        cutoff = self._now() - older_than
        markers = list(self._query(
            f"{prefix_filter(INBOX_PREFIX)} and ReceivedAt lt @cutoff", cutoff=cutoff))
        dispatched = list(self._query(
            f"{prefix_filter(OUTBOX_PREFIX)} and Status eq '{DISPATCHED}'"
            " and DispatchedAt lt @cutoff", cutoff=cutoff))
        self._delete(markers + dispatched)
        return PurgeReport(inbox_markers=len(markers), dispatched_rows=len(dispatched))

    def _mark_chunk(self, chunk: list[OutboxRow]) -> None:
        now = self._now()
        operations = [("update", _dispatched_patch(row, now), _guard(row)) for row in chunk]
        try:
            results = self.table.submit_transaction(operations)
        except TableTransactionError:
            self._mark_one_by_one(chunk, now)
            return
        except AzureError as error:
            raise map_storage_error(error) from error
        for row, metadata in zip(chunk, results, strict=True):
            row.status, row.etag = DISPATCHED, metadata.get("etag")

    def _mark_one_by_one(self, chunk: list[OutboxRow], now: datetime) -> None:
        for row in chunk:
            try:
                metadata = self.table.update_entity(
                    _dispatched_patch(row, now), **_guard(row))
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
            except AzureError as error:
                raise map_storage_error(error) from error
            row.status, row.etag = DISPATCHED, metadata.get("etag")

    def _delete(self, entities: list[Any]) -> None:
        by_partition: dict[str, list[Any]] = defaultdict(list)
        for entity in entities:
            by_partition[entity["PartitionKey"]].append(entity)
        for group in by_partition.values():
            for start in range(0, len(group), _BATCH):
                operations = [
                    ("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]},
                     {"etag": e.metadata["etag"], "match_condition": MatchConditions.IfNotModified})
                    for e in group[start:start + _BATCH]
                ]
                storage_call(self.table.submit_transaction, operations)

    def _query(self, query: str, **parameters: Any) -> Iterable[Any]:
        try:
            return list(self.table.query_entities(query, parameters=parameters or None))
        except AzureError as error:
            raise map_storage_error(error) from error


def _dispatched_patch(row: OutboxRow, now: datetime) -> dict[str, Any]:
    return {"PartitionKey": row.partition_key, "RowKey": row.row_key,
            "Status": DISPATCHED, "DispatchedAt": now}


def _guard(row: OutboxRow) -> dict[str, Any]:
    if row.etag is None:
        return {"mode": UpdateMode.MERGE}
    return {"mode": UpdateMode.MERGE, "etag": row.etag,
            "match_condition": MatchConditions.IfNotModified}
