"""The Table store on Azurite passes the unit-of-work conformance suite: one transaction,
inbox dedupe with the stored disposition, ETag races, limits, request counts."""

from __future__ import annotations

import pytest
from azure.data.tables import TableClient

from agents.backbone import TableStore
from tests.conformance.unit_of_work import Rows, UnitOfWorkConformance
from tests.integration.backbone.conftest import rows


class TestTableUnitOfWork(UnitOfWorkConformance):
    @pytest.fixture
    def store(self, table: TableClient) -> TableStore:
        return TableStore(table)

    @pytest.fixture
    def rows(self, table: TableClient) -> Rows:
        return lambda: rows(table)
