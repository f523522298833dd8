"""The fraud agent on the local cloud: payments published with the backbone's Event Hubs
publisher (hashed card keys) to devstack's `fraud-payments`, scored by `function_app.py` in
devstack's Functions host (cardinality many, consumer group `fraud-scoring`, checkpoints in
Azurite), state in Azurite's Table, alerts on devstack's `fraud-alerts` topic. Deadlines are
generous; nothing is timed."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from devstack.azurite import Azurite
from devstack.server import DevStack
from tests.integration.fraud.support import ROOT, T0, Cloud, card, eventually, payment


@pytest.fixture(scope="module")
def devstack() -> Iterator[DevStack]:
    with DevStack([ROOT / "infra/entities/servicebus.json",
                   ROOT / "infra/entities/eventhubs.json"], port=0) as stack:
        yield stack


@pytest.fixture
async def cloud(devstack: DevStack, azurite: Azurite) -> AsyncIterator[Cloud]:
    saved = dict(os.environ)
    cloud = Cloud(devstack, azurite)
    cloud.reset()
    await cloud.start()
    try:
        yield cloud
    finally:
        await cloud.stop()
        os.environ.clear()
        os.environ.update(saved)


async def test_a_velocity_burst_raises_one_alert_for_the_payment_that_tripped_it(
        cloud: Cloud) -> None:
    tok = card()
    cloud.publish(*(payment(tok, n) for n in range(6)))
    await eventually(cloud.scored(tok, 6))
    [alert] = await cloud.alerts(tok)
    assert alert["type"] == "fraud.alert.raised"
    assert alert["data"]["orderId"] == f"{tok}-o5"
    assert alert["data"]["reasons"] == ["velocity"]
    assert alert["data"]["explainedBy"] == "rules"


async def test_a_cards_payments_are_scored_in_the_order_they_were_published(
        cloud: Cloud) -> None:
    tok = card()
    paris, sydney = {"country": "FR", "lat": 48.86, "lon": 2.35}, {
        "country": "AU", "lat": -33.87, "lon": 151.21}
    hours = [(paris, 0), (paris, 1), (sydney, 30), (sydney, 31)]  # a day's flight: plausible
    cloud.publish(*(payment(tok, n, at=T0 + timedelta(hours=h), location=where)
                    for n, (where, h) in enumerate(hours)))
    window = await eventually(cloud.scored(tok, 4))
    assert [event for _, _, event in window["recent"]] == [
        f"{tok}-pay-{n}" for n in range(4)][-len(window["recent"]):]
    assert await cloud.alerts(tok) == []


async def test_a_payment_published_twice_has_one_effect(
        cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agents.fraud.blueprint")
    tok = card()
    burst = [payment(tok, n) for n in range(6)]
    cloud.publish(*burst)
    cloud.publish(*burst)  # the orders relay re-sent them: same ids, new sequence numbers
    cloud.publish(payment(tok, 6, at=T0 + timedelta(hours=2)))
    window = await eventually(cloud.scored(tok, 7))
    assert window["count"] == 7
    assert len(await cloud.alerts(tok)) == 1
    assert reread(caplog) == 6


async def test_a_batch_read_again_after_a_crash_before_its_checkpoint_raises_no_second_alert(
        cloud: Cloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agents.fraud.blueprint")
    tok = card()
    cloud.publish(*(payment(tok, n) for n in range(6)))
    await eventually(cloud.scored(tok, 6))
    assert len(await cloud.alerts(tok)) == 1
    await cloud.stop()
    cloud.forget_checkpoints()  # the new reader starts from the beginning of each partition
    await cloud.start()
    cloud.publish(payment(tok, 6, at=T0 + timedelta(hours=2)))
    window = await eventually(cloud.scored(tok, 7))  # the re-read batch came first
    assert window["count"] == 7
    assert await cloud.alerts(tok) == []
    assert reread(caplog) >= 6


def reread(caplog: pytest.LogCaptureFixture) -> int:
    """Events the host's batches found already applied (from the trigger's summary line)."""
    return sum(int(record.args[4]) for record in caplog.records  # type: ignore[index]
               if record.name == "agents.fraud.blueprint" and "already applied" in record.msg)
