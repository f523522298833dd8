"""Table Storage plumbing shared by the unit of work, outbox and saga: row keys, request
counting through the SDK's public `raw_request_hook`, error translation, and `TableStore`,
the Table adapter of the store port (`store.py`).

One table per agent holds, per partition (= aggregate or saga id): the aggregate's state
row(s), inbox markers and outbox rows, so one entity-group transaction covers them all.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from agents.backbone.errors import map_storage_error
from agents.backbone.store import (
    Operation,
    Refusal,
    Store,
    StoredRow,
    TransactionRefused,
    Write,
    check_property_types,
)

# The Tables SDK and azure-core load with the first table client, not at import (cold start);
# a call on a client imports what it catches.
if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient, TableTransactionError

STATE_ROW = "state"
INBOX_PREFIX = "inbox|"
OUTBOX_PREFIX = "outbox|"
LOG_PREFIX = "log|"
# "}" sorts right after "|", so [prefix, prefix with "}") is exactly the prefix's range.
_RANGE_END = "}"

P = ParamSpec("P")
T = TypeVar("T")


_FORBIDDEN = frozenset("/\\#?%") | frozenset(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
_MAX_KEY_BYTES = 1024


def table_key(value: str) -> str:
    """`value` made safe as a PartitionKey/RowKey: the characters Table Storage forbids
    (/ \\ # ? and control characters) and % are percent-encoded, so distinct ids stay
    distinct; a key over the 1 KiB limit becomes its SHA-256. Safe ids pass unchanged."""
    encoded = "".join(f"%{ord(ch):02X}" if ch in _FORBIDDEN else ch for ch in value)
    if len(encoded.encode("utf-16-le")) > _MAX_KEY_BYTES - 64:
        return "~" + hashlib.sha256(value.encode("utf-8")).hexdigest()
    return encoded


def inbox_row(message_id: str) -> str:
    return f"{INBOX_PREFIX}{table_key(message_id)}"


def outbox_row(event_id: str) -> str:
    return f"{OUTBOX_PREFIX}{table_key(event_id)}"


def prefix_filter(prefix: str) -> str:
    """An OData filter for RowKeys starting with `prefix` (a range scan, not a full scan)."""
    end = prefix[:-1] + _RANGE_END
    return f"RowKey ge '{prefix}' and RowKey lt '{end}'"


def quote(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class RequestScope:
    """Storage requests made in one `RequestCounter.scope()` (one handled message)."""

    count: int = 0


class RequestCounter:
    """Counts every HTTP request a table client sends (each retry counts too).

    Pass `counter.hook` as `raw_request_hook=` when building the TableServiceClient (the
    SDK's public pipeline hook); `scope()` also counts per thread/context, e.g. per message.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self._scope: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
            "backbone_request_scope", default=None
        )

    def hook(self, request: Any) -> None:
        with self._lock:
            self.total += 1
        scope = self._scope.get()
        if scope is not None:
            scope.count += 1

    @contextmanager
    def scope(self) -> Iterator[RequestScope]:
        current = RequestScope()
        token = self._scope.set(current)
        try:
            yield current
        finally:
            self._scope.reset(token)


def state_table(
    service: TableServiceClient, name: str, *, create: bool = True
) -> TableClient:
    """The agent's state table (created when missing, e.g. on Azurite)."""
    if create:
        storage_call(service.create_table_if_not_exists, name)
    return service.get_table_client(name)


def storage_call(operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one SDK call, translating Azure errors into backbone errors."""
    from azure.core.exceptions import AzureError

    try:
        return operation(*args, **kwargs)
    except AzureError as error:
        raise map_storage_error(error) from error


class TableStore(Store):
    """The store port over one Table (Azure Table Storage or Azurite)."""

    def __init__(self, table: TableClient) -> None:
        self.table = table
        self.name = table.table_name

    def get(self, partition_key: str, row_key: str) -> StoredRow | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entity = self.table.get_entity(partition_key, row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as error:
            raise map_storage_error(error) from error
        return StoredRow(dict(entity), str(entity.metadata["etag"]))

    def submit(self, operations: Sequence[Operation]) -> list[str]:
        from azure.core.exceptions import AzureError
        from azure.data.tables import TableTransactionError

        check_property_types(operations)
        try:
            results = self.table.submit_transaction([_sdk_operation(op) for op in operations])
        except TableTransactionError as error:
            refusal = _refusal(error)
            if refusal is None:
                raise map_storage_error(error) from error
            raise TransactionRefused(error.index, refusal, _error_code(error)) from error
        except AzureError as error:
            raise map_storage_error(error) from error
        return [str(metadata.get("etag") or "") for metadata in results]

    def query(
        self, prefix: str, *, partition_key: str | None = None,
        equals: Mapping[str, str] | None = None, before: tuple[str, datetime] | None = None,
    ) -> list[StoredRow]:
        clauses = [prefix_filter(prefix)]
        parameters: dict[str, Any] = {}
        if partition_key is not None:
            clauses.insert(0, "PartitionKey eq @pk")
            parameters["pk"] = partition_key
        for n, (name, value) in enumerate((equals or {}).items()):
            clauses.append(f"{name} eq @v{n}")
            parameters[f"v{n}"] = value
        if before is not None:
            clauses.append(f"{before[0]} lt @before")
            parameters["before"] = before[1]
        from azure.core.exceptions import AzureError

        try:
            entities = list(self.table.query_entities(" and ".join(clauses),
                                                      parameters=parameters or None))
        except AzureError as error:
            raise map_storage_error(error) from error
        return [StoredRow(dict(entity), str(entity.metadata["etag"])) for entity in entities]


def as_store(store: Store | TableClient) -> Store:
    """A `Store`; a bare `TableClient` (the older signature) gets the Table adapter."""
    return store if isinstance(store, Store) else TableStore(store)


def _sdk_operation(operation: Operation) -> tuple[str, dict[str, Any], dict[str, Any]]:
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    guard: dict[str, Any] = {}
    if operation.etag is not None:
        guard = {"etag": operation.etag, "match_condition": MatchConditions.IfNotModified}
    match operation.write:
        case Write.INSERT:
            return "create", operation.entity, {}
        case Write.REPLACE:
            return "update", operation.entity, {"mode": UpdateMode.REPLACE, **guard}
        case Write.MERGE:
            return "update", operation.entity, {"mode": UpdateMode.MERGE, **guard}
        case Write.DELETE:
            return "delete", operation.entity, guard


def _refusal(error: TableTransactionError) -> Refusal | None:
    code = _error_code(error)
    if code == "EntityAlreadyExists" or error.status_code == 409:
        return Refusal.EXISTS
    if code == "UpdateConditionNotSatisfied" or error.status_code == 412:
        return Refusal.CHANGED
    if code == "ResourceNotFound" or error.status_code == 404:
        return Refusal.MISSING
    return None


def _error_code(error: TableTransactionError) -> str:
    # The SDK sets `error_code` at runtime but does not declare it on the class.
    return str(getattr(error, "error_code", ""))
