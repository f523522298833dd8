"""The store port: what the unit of work and the outbox relay need from an agent's table.

Rows live in partitions (PartitionKey = the table-safe aggregate or saga id, see
`tables.table_key`), each row an entity with an ETag that changes on every write. A
transaction is a list of `Operation`s on ONE partition, applied all or nothing; the first
operation the store refuses raises `TransactionRefused` naming its index and why.

Adapters: `tables.TableStore` (Azure Table Storage / Azurite) and `memory.MemoryStore` (a dict,
for fast unit tests). Both pass the one conformance suite in `tests/conformance/`.
"""

from __future__ import annotations

import enum
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.backbone.errors import ConcurrencyConflict, StorageError, TransactionTooLarge

# The limits of one entity-group transaction (Azure Table Storage), kept by every adapter.
MAX_ENTITIES = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTY_BYTES = 64 * 1024
# Multipart headers around each operation in the $batch body (measured: ~400 bytes).
_PER_OPERATION_OVERHEAD = 512
# What a property can hold (the SDK maps a bare int to Edm.Int32 and refuses a larger one).
PROPERTY_TYPES = (str, bool, int, float, datetime, bytes, uuid.UUID, type(None))
_INT32 = range(-2**31, 2**31)


class Write(enum.Enum):
    INSERT = "insert"    # the row must not exist
    REPLACE = "replace"  # the row must exist with `etag`; its properties become `entity`'s
    MERGE = "merge"      # the row must exist (with `etag` when given); `entity` is a patch
    DELETE = "delete"    # the row must exist with `etag`


@dataclass(frozen=True)
class Operation:
    """One write of a transaction; `entity` carries PartitionKey and RowKey."""

    write: Write
    entity: dict[str, Any]
    etag: str | None = None

    @property
    def partition_key(self) -> str:
        return str(self.entity["PartitionKey"])

    @property
    def row_key(self) -> str:
        return str(self.entity["RowKey"])


@dataclass(frozen=True)
class StoredRow:
    """A row as read: its properties (with PartitionKey and RowKey) and its current ETag."""

    entity: dict[str, Any]
    etag: str


class Refusal(enum.Enum):
    EXISTS = "exists"    # an insert found the row already there
    CHANGED = "changed"  # the row's ETag is not the one the operation was guarded by
    MISSING = "missing"  # a replace, merge or delete found no row


class TransactionRefused(ConcurrencyConflict):
    """The store refused operation `index` of a transaction; nothing of it was applied."""

    reason = "TransactionRefused"

    def __init__(self, index: int, refusal: Refusal, detail: str) -> None:
        super().__init__(f"operation {index} refused ({refusal.value}): {detail}")
        self.index = index
        self.refusal = refusal


class Store(ABC):
    """An agent's table: point reads, one-partition transactions, prefix queries."""

    name: str

    @abstractmethod
    def get(self, partition_key: str, row_key: str) -> StoredRow | None:
        """The row, or None if it does not exist."""

    @abstractmethod
    def submit(self, operations: Sequence[Operation]) -> list[str]:
        """Apply `operations` (one partition) atomically; the new ETag of each written row
        ("" for a delete). Raises `TransactionRefused`, or a mapped backbone error
        (`StorageError` for a value `check_property_types` refuses). A None property is not
        stored; a naive datetime reads back as UTC."""

    @abstractmethod
    def query(
        self, prefix: str, *, partition_key: str | None = None,
        equals: Mapping[str, str] | None = None, before: tuple[str, datetime] | None = None,
    ) -> list[StoredRow]:
        """Rows whose RowKey starts with `prefix` (in one partition when given), whose
        properties equal `equals`, and whose `before[0]` property is earlier than
        `before[1]`; ordered by PartitionKey, then RowKey."""


def check_transaction_limits(operations: Sequence[Operation]) -> None:
    """Raise `TransactionTooLarge` (naming the limit) before the service would refuse."""
    if len(operations) > MAX_ENTITIES:
        raise TransactionTooLarge(
            f"{len(operations)} entities in one transaction; the limit is {MAX_ENTITIES}"
        )
    total = 0
    for operation in operations:
        entity = operation.entity
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


def check_property_types(operations: Sequence[Operation]) -> None:
    """Raise `StorageError` naming a property Table Storage cannot hold (a list, a dict, an
    int beyond 32 bits), before the SDK refuses the whole batch with a vaguer TypeError."""
    for operation in operations:
        for name, value in operation.entity.items():
            if not isinstance(value, PROPERTY_TYPES) or (
                    isinstance(value, int) and not isinstance(value, bool)
                    and value not in _INT32):
                raise StorageError(
                    f"property {name} of row {operation.row_key}: {type(value).__name__} "
                    f"{value!r:.40} is not a Table property value (str, bool, 32-bit int, "
                    "float, datetime, bytes, UUID); store it as a string or JSON")


def _property_bytes(value: object) -> int:
    # The service stores strings as UTF-16; that is what its 64 KiB property limit counts.
    if isinstance(value, str):
        return len(value.encode("utf-16-le"))
    if isinstance(value, bytes):
        return len(value)
    return 8
