"""The demo's order stories, end to end: Azurite, devstack's Service Bus and devstack's
Functions host running `function_app.py`, driven over real HTTP and the official SDKs.

The stories, the local cloud and the invariant checks are `scripts/demo.py`'s own (what
`make demo` runs); one stack is shared by the module. Each test asserts one story's outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from scripts import demo
from scripts.demo import Cloud, Ledger

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cloud() -> AsyncIterator[Cloud]:
    async with demo.local_cloud() as running:
        yield running


def failed(checks: list[demo.Check]) -> list[str]:
    return [f"{check.name}: {check.detail}" for check in checks if not check.passed]


async def test_happy_path_completes_with_one_charge_and_one_hold_kept(cloud: Cloud) -> None:
    outcome = await demo.run(demo.HAPPY, cloud)
    assert outcome.order["status"] == "completed"
    assert outcome.ledger == Ledger(charges=1, refunds=0, holds=1, releases=0, shipments=1)
    assert [entry["step"] for entry in outcome.order["timeline"]
            if entry["status"] == "succeeded"] == [
        "reserve_stock", "charge_payment", "allocate_stock", "ship_order"]
    assert outcome.pending_outbox == 0 and outcome.new_dead_letters == []
    assert failed(outcome.checks) == []


async def test_out_of_stock_after_the_charge_refunds_then_releases(cloud: Cloud) -> None:
    outcome = await demo.run(demo.OUT_OF_STOCK, cloud)
    assert outcome.order["status"] == "compensated"
    assert outcome.order["failure"]["step"] == "allocate_stock"
    assert outcome.ledger == Ledger(charges=1, refunds=1, holds=1, releases=1, shipments=0)
    compensations = [entry["step"] for entry in outcome.order["timeline"]
                     if entry["phase"] == "compensation" and entry["status"] == "compensated"]
    assert compensations == ["charge_payment", "reserve_stock"]
    assert failed(outcome.checks) == []


async def test_a_declined_payment_charges_nothing_and_releases_the_stock(cloud: Cloud) -> None:
    outcome = await demo.run(demo.DECLINED, cloud)
    assert outcome.order["status"] == "compensated"
    assert outcome.order["failure"]["step"] == "charge_payment"
    assert outcome.ledger == Ledger(charges=0, refunds=0, holds=1, releases=1, shipments=0)
    assert failed(outcome.checks) == []


async def test_a_duplicate_storm_makes_one_order_with_one_charge(cloud: Cloud) -> None:
    outcome = await demo.run(demo.DUPLICATE_STORM, cloud)
    assert outcome.http_statuses == [201, 200, 200]
    assert len(outcome.order_ids) == 1
    assert outcome.duplicated > 0  # the broker really delivered messages twice
    assert outcome.order["status"] == "completed"
    assert outcome.ledger == Ledger(charges=1, refunds=0, holds=1, releases=0, shipments=1)
    assert failed(outcome.checks) == []


async def test_a_charge_past_its_deadline_times_out_and_is_compensated(cloud: Cloud) -> None:
    outcome = await demo.run(demo.SLOW_GATEWAY, cloud)
    assert outcome.order["status"] == "compensated"
    assert outcome.order["failure"]["reason"] == "timeout"
    assert ("charge_payment", "timed_out") in [
        (entry["step"], entry["status"]) for entry in outcome.order["timeline"]]
    # The slow gateway did charge (late): the compensation refunds it.
    assert outcome.ledger == Ledger(charges=1, refunds=1, holds=1, releases=1, shipments=0)
    assert failed(outcome.checks) == []


async def test_a_shipping_reply_after_its_deadline_completes_charged_once_never_refunded(
        cloud: Cloud) -> None:
    outcome = await demo.run(demo.LATE_SHIPPING_REPLY, cloud)
    assert outcome.order["status"] == "completed"
    assert outcome.order["failure"] is None
    shipping = [(entry["status"], entry["attempt"]) for entry in outcome.order["timeline"]
                if entry["step"] == "ship_order"]
    # in doubt at the deadline, the same command went again; attempt 1's reply decided
    assert shipping == [("sent", 1), ("in_doubt", 1), ("sent", 2), ("succeeded", 1)]
    assert outcome.ledger == Ledger(charges=1, refunds=0, holds=1, releases=0, shipments=1)
    assert failed(outcome.checks) == []


async def test_a_poison_message_is_dead_lettered_at_once_with_its_reason(cloud: Cloud) -> None:
    outcome = await demo.run_poison(cloud)
    assert outcome.letter.entity == "orders-saga"
    assert outcome.letter.reason == "InvalidEncoding"
    assert "not UTF-8 JSON" in (outcome.letter.description or "")
    assert outcome.letter.body == demo.POISON_BODY
    assert outcome.failures == []
    listed = [letter.message_id for letter in await cloud.dead_letters()]
    assert outcome.message_id in listed
    assert failed(outcome.checks) == []


async def test_after_a_story_every_saga_is_terminal_and_no_outbox_row_is_pending(
        cloud: Cloud) -> None:
    await demo.run(demo.HAPPY, cloud)
    sagas = cloud.sagas_by_state()
    assert sagas and set(sagas) <= demo.TERMINAL
    assert await cloud.pending_outbox() == 0
