"""Fixtures shared by the integration tests: a fresh Azurite table and its request count."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient, TableServiceClient

from agents.backbone import RequestCounter, state_table


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
def tables(storage_connection_string: str, counter: RequestCounter) -> TableServiceClient:
    return TableServiceClient.from_connection_string(
        storage_connection_string, raw_request_hook=counter.hook)


@pytest.fixture
def table(tables: TableServiceClient) -> Iterator[TableClient]:
    name = f"t{uuid.uuid4().hex[:16]}"
    client = state_table(tables, name)
    yield client
    tables.delete_table(name)
