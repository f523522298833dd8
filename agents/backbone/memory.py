"""The in-memory adapter of the store port: an agent's table as a dict, for fast unit tests.

It keeps the Table semantics the unit of work and the outbox rely on, checked by the same
conformance suite as `TableStore` (`tests/conformance/`): an ETag per row that changes on
every write, one-partition transactions applied all or nothing, the first refused operation
reported by index (insert of an existing row, stale ETag, missing row), the entity-group
limits and property types, None properties not stored, rows ordered by PartitionKey then
RowKey. Thread-safe (one lock), so races between
threads behave as on the service. Each call counts as one request on `counter`, the way a
`TableStore` built with `counter.hook` counts HTTP requests.

How a test builds one (a handler, a saga engine, or a whole `MessageProcessor`)::

    store = MemoryStore()
    committed = run_unit_of_work(store, "order-1", lambda uow: engine.start(uow, data),
                                 inbox_id="m1", registry=schemas)
    store.partition("order-1")     # {row key: properties}, to assert on

    relay = OutboxRelay(store, publisher)          # any `Publisher`, e.g. one that records
    processor = MessageProcessor(store, relay, registry=schemas)
    outcome = processor.handle(event, engine.handle)
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agents.backbone.errors import StorageError
from agents.backbone.store import (
    Operation,
    Refusal,
    Store,
    StoredRow,
    TransactionRefused,
    Write,
    check_property_types,
    check_transaction_limits,
)
from agents.backbone.tables import RequestCounter

_Key = tuple[str, str]


class MemoryStore(Store):
    """An agent's table in memory."""

    def __init__(self, name: str = "memory", *, counter: RequestCounter | None = None) -> None:
        self.name = name
        self._counter = counter
        self._lock = threading.Lock()
        self._rows: dict[_Key, StoredRow] = {}
        self._versions = itertools.count(1)

    def get(self, partition_key: str, row_key: str) -> StoredRow | None:
        self._count()
        with self._lock:
            row = self._rows.get((partition_key, row_key))
        return None if row is None else StoredRow(dict(row.entity), row.etag)

    def submit(self, operations: Sequence[Operation]) -> list[str]:
        self._count()
        check_property_types(operations)
        check_transaction_limits(operations)
        partitions = {operation.partition_key for operation in operations}
        if len(partitions) > 1:
            raise StorageError(f"one transaction spans partitions {sorted(partitions)}")
        keys = [(operation.partition_key, operation.row_key) for operation in operations]
        if len(set(keys)) < len(keys):
            raise StorageError("one transaction writes the same row twice")
        with self._lock:
            written = [self._written(index, operation)
                       for index, operation in enumerate(operations)]
            for key, row in zip(keys, written, strict=True):
                if row is None:
                    del self._rows[key]
                else:
                    self._rows[key] = row
        return [row.etag if row is not None else "" for row in written]

    def query(
        self, prefix: str, *, partition_key: str | None = None,
        equals: Mapping[str, str] | None = None, before: tuple[str, datetime] | None = None,
    ) -> list[StoredRow]:
        self._count()
        with self._lock:
            found = [StoredRow(dict(row.entity), row.etag)
                     for (partition, row_key), row in sorted(self._rows.items())
                     if row_key.startswith(prefix)
                     and partition_key in (None, partition)
                     and all(row.entity.get(k) == v for k, v in (equals or {}).items())
                     and (before is None or _earlier(row.entity.get(before[0]), before[1]))]
        return found

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every row's properties by (PartitionKey, RowKey), for tests; not a request."""
        with self._lock:
            return {key: dict(row.entity) for key, row in sorted(self._rows.items())}

    def partition(self, partition_key: str) -> dict[str, dict[str, Any]]:
        """One partition's rows by RowKey (`partition_key` as stored), for tests."""
        return {rk: row for (pk, rk), row in self.rows().items() if pk == partition_key}

    def _written(self, index: int, operation: Operation) -> StoredRow | None:
        """The row after `operation` (None: deleted), or raise why the store refuses it."""
        current = self._rows.get((operation.partition_key, operation.row_key))
        if operation.write is Write.INSERT:
            if current is not None:
                raise TransactionRefused(index, Refusal.EXISTS, operation.row_key)
            return self._new_version(operation.entity)
        if current is None:
            raise TransactionRefused(index, Refusal.MISSING, operation.row_key)
        if operation.etag is not None and operation.etag != current.etag:
            raise TransactionRefused(index, Refusal.CHANGED, operation.row_key)
        if operation.write is Write.DELETE:
            return None
        if operation.write is Write.MERGE:
            patch = {k: v for k, v in operation.entity.items() if v is not None}
            return self._new_version({**current.entity, **patch})
        return self._new_version(operation.entity)

    def _new_version(self, entity: Mapping[str, Any]) -> StoredRow:
        # As the service stores them: None properties dropped, times in UTC.
        stored = {name: value.replace(tzinfo=UTC)
                  if isinstance(value, datetime) and value.tzinfo is None else value
                  for name, value in entity.items() if value is not None}
        return StoredRow(stored, f'W/"{next(self._versions)}"')

    def _count(self) -> None:
        if self._counter is not None:
            self._counter.hook(None)


def _earlier(value: object, cutoff: datetime) -> bool:
    return isinstance(value, datetime) and value < cutoff
