"""The in-memory store passes the unit-of-work conformance suite (no server needed)."""

from __future__ import annotations

import pytest

from agents.backbone import MemoryStore, RequestCounter
from tests.conformance.unit_of_work import Rows, UnitOfWorkConformance


class TestMemoryUnitOfWork(UnitOfWorkConformance):
    @pytest.fixture
    def store(self, counter: RequestCounter) -> MemoryStore:
        return MemoryStore(counter=counter)

    @pytest.fixture
    def rows(self, store: MemoryStore) -> Rows:
        return store.rows
