"""Fixtures: an orders stack per test, its deliveries in the test's hands (see `stack.py`)."""

from __future__ import annotations

import pytest

from tests.integration.backbone.deliveries import Deliveries
from tests.integration.orders.stack import MAX_DELIVERY_COUNT, OrdersStack, build_stack


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries(max_deliveries=MAX_DELIVERY_COUNT)


@pytest.fixture
def stack(storage_connection_string: str, deliveries: Deliveries) -> OrdersStack:
    return build_stack(storage_connection_string, deliveries)
