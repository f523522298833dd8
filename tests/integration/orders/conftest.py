"""Fixtures: an orders stack per test (see `stack.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.backbone.broker import InMemoryBroker
from tests.integration.orders.stack import OrdersStack, build_stack


@pytest.fixture
def broker() -> InMemoryBroker:
    return InMemoryBroker(max_delivery_count=5)


@pytest.fixture
def stack(storage_connection_string: str, broker: InMemoryBroker) -> Iterator[OrdersStack]:
    with build_stack(storage_connection_string, broker) as built:
        yield built
