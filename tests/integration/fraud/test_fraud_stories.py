"""The fraud demo's stories as tests, on one shared stack (`scripts/fraud_demo.py`'s own:
Azurite, devstack's Service Bus, Event Hubs and local model, the whole app in devstack's
Functions host), driven over HTTP: an order's `location` reaches the payment stream and an
impossible trip compensates its order; an LLM outage opens the shared breaker and a probe
closes it. Each test asserts one story's checks, named in the failure."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from scripts import fraud_demo
from scripts.demo import Check
from scripts.fraud_demo import FraudCloud

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud() -> AsyncIterator[FraudCloud]:
    async with fraud_demo.fraud_cloud() as running:
        yield running


def failed(checks: list[Check]) -> list[str]:
    return [f"{check.name}: {check.detail}" for check in checks if not check.passed]


async def test_an_impossible_trip_compensates_the_second_order_and_refunds_its_charge(
        cloud: FraudCloud) -> None:
    checks = await fraud_demo.impossible_trip(cloud)
    assert len(checks) == 3 and failed(checks) == []


async def test_an_llm_outage_opens_the_breaker_and_a_probe_closes_it(cloud: FraudCloud) -> None:
    checks = await fraud_demo.llm_outage(cloud)
    assert len(checks) == 5 and failed(checks) == []
