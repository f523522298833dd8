"""The orders agent on the local cloud: devstack's Service Bus over AMQP (the official SDK on
both sides), Azurite, and devstack's Functions host running `function_app.py` with real HTTP.

Everything here waits on conditions with generous deadlines; nothing times the code.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.eventhub.aio import EventHubConsumerClient
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from agents.backbone import Envelope
from agents.backbone.partitions import hashed
from agents.backbone.wire import CLOUDEVENTS_CONTENT_TYPE, encode_body
from agents.contracts import fraud
from agents.orders import bootstrap, entities, simulated
from devstack.azurite import Azurite
from devstack.host import FunctionsHost
from devstack.server import DevStack
from tests.integration.orders.stack import order_body

ROOT = Path(__file__).resolve().parents[3]
FUNCTION_KEY = "orders-test-function-key"
STEP_TIMEOUT_SECONDS = 8
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 60.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def devstack() -> Iterator[DevStack]:
    with DevStack([ROOT / "infra/entities/servicebus.json",
                   ROOT / "infra/entities/eventhubs.json"], port=0) as stack:
        yield stack


@pytest.fixture
async def orders_host(devstack: DevStack, azurite: Azurite) -> AsyncIterator[FunctionsHost]:
    saved = dict(os.environ)
    host = FunctionsHost(ROOT, settings={
        "AzureWebJobsStorage": azurite.connection_string,
        entities.STATE_STORAGE: azurite.connection_string,
        entities.CONNECTION: devstack.connection_string,
        entities.FRAUD_CONNECTION: devstack.connection_string,
        entities.FRAUD_EVENTHUBS: devstack.connection_string,
        bootstrap.STEP_TIMEOUT_SETTING: str(STEP_TIMEOUT_SECONDS),
        simulated.SETTING: "true",
        "DEVSTACK_HOST_FUNCTION_KEY": FUNCTION_KEY,
    })
    await host.start()
    try:
        yield host
    finally:
        await host.stop()
        os.environ.clear()
        os.environ.update(saved)


class Api:
    def __init__(self, host: FunctionsHost, session: aiohttp.ClientSession) -> None:
        self.base = f"{host.base_url}/api"
        self.session = session
        self.headers = {"x-functions-key": FUNCTION_KEY}

    async def post(self, path: str, body: Any, **headers: str) -> tuple[int, Any]:
        async with self.session.post(f"{self.base}/{path}", json=body,
                                     headers={**self.headers, **headers}) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(f"{self.base}/{path}", headers=self.headers) as response:
            return response.status, await response.json()

    async def place(self, body: Any) -> str:
        status, order = await self.post("orders", body, **{"Idempotency-Key": str(uuid.uuid4())})
        assert status == 201, order
        return str(order["orderId"])

    async def settled(self, order_id: str) -> dict[str, Any]:
        async def terminal() -> dict[str, Any] | None:
            _, order = await self.get(f"orders/{order_id}")
            return order if order["status"] in ("completed", "compensated", "failed") else None
        return await eventually(terminal)


@pytest.fixture
async def api(orders_host: FunctionsHost) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(orders_host, session)


def movements(storage: str, table: str, ledger_key: str, kind: str) -> int:
    client = TableServiceClient.from_connection_string(storage).get_table_client(table)
    return len(list(client.query_entities("PartitionKey eq @pk and movement eq @kind",
                                          parameters={"pk": ledger_key, "kind": kind})))


def statuses(order: dict[str, Any]) -> list[tuple[str, str]]:
    return [(entry["step"], entry["status"]) for entry in order["timeline"]]


async def test_an_order_completes_over_real_http_and_service_bus(api: Api, azurite: Azurite
                                                                  ) -> None:
    order_id = await api.place(order_body())
    order = await api.settled(order_id)
    assert order["status"] == "completed"
    storage = azurite.connection_string
    assert movements(storage, "ordersinventory", f"reservation-{order_id}", "hold") == 1
    assert movements(storage, "orderspayments", f"charge-{order_id}", "charge") == 1
    assert movements(storage, "ordersshipping", order_id, "shipment") == 1
    assert ("ship_order", "succeeded") in statuses(order)


async def payment_stream(devstack: DevStack) -> list[dict[str, Any]]:
    """Every event on the payment stream so far: read from the start of each partition until
    each has been idle once."""
    events: list[dict[str, Any]] = []
    idle: set[str] = set()
    consumer = EventHubConsumerClient.from_connection_string(
        devstack.connection_string, consumer_group="$default",
        eventhub_name=entities.PAYMENTS_HUB)

    async def on_event(partition: Any, event: Any) -> None:
        if event is None:
            idle.add(partition.partition_id)
        else:
            events.append(json.loads(event.body_as_str()))

    async with consumer:
        partitions = set(await consumer.get_partition_ids())
        receiving = asyncio.create_task(consumer.receive(
            on_event=on_event, starting_position="-1", max_wait_time=0.5))
        try:
            await eventually(lambda: asyncio.sleep(0, result=idle >= partitions or None))
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    return events


async def test_a_payment_decline_releases_stock_and_charges_nothing(
        api: Api, azurite: Azurite, devstack: DevStack) -> None:
    card = f"tok-declined-{uuid.uuid4().hex[:6]}"
    status, _ = await api.post("simulators/payments/mode",
                               {"mode": "decline", "scope": f"card:{card}"})
    assert status == 200
    order_id = await api.place(order_body(card=card))
    assert (await api.settled(order_id))["status"] == "compensated"
    storage = azurite.connection_string
    assert movements(storage, "orderspayments", f"charge-{order_id}", "charge") == 0
    assert movements(storage, "ordersinventory", f"reservation-{order_id}", "release") == 1
    # A charge would have gone out with the payment reply the saga compensated on.
    on_stream = [event for event in await payment_stream(devstack)
                 if event["data"]["orderId"] == order_id]
    assert on_stream == []


async def test_a_shipping_failure_refunds_and_releases(api: Api, azurite: Azurite) -> None:
    card = f"tok-ship-fails-{uuid.uuid4().hex[:6]}"
    status, _ = await api.post("simulators/shipping/mode",
                               {"mode": "fail", "scope": f"card:{card}"})
    assert status == 200
    order_id = await api.place(order_body(card=card))
    assert (await api.settled(order_id))["status"] == "compensated"
    storage = azurite.connection_string
    assert movements(storage, "orderspayments", f"charge-{order_id}", "refund") == 1
    assert movements(storage, "ordersinventory", f"reservation-{order_id}", "release") == 1
    assert movements(storage, "ordersshipping", order_id, "shipment") == 0


async def test_each_charge_reaches_the_payment_stream_on_event_hubs_keyed_by_card(
        api: Api, devstack: DevStack) -> None:
    body = order_body()
    order_id = await api.place(body)
    await api.settled(order_id)
    seen: list[tuple[dict[str, Any], bytes | None]] = []
    consumer = EventHubConsumerClient.from_connection_string(
        devstack.connection_string, consumer_group="$default",
        eventhub_name=entities.PAYMENTS_HUB)

    async def on_event(partition: Any, event: Any) -> None:
        if event is not None:
            seen.append((json.loads(event.body_as_str()), event.partition_key))

    async with consumer:
        receiving = asyncio.create_task(consumer.receive(
            on_event=on_event, starting_position="-1", max_wait_time=0.5))

        async def charged() -> list[tuple[dict[str, Any], bytes | None]] | None:
            mine = [(e, key) for e, key in seen if e["data"]["orderId"] == order_id]
            return mine or None

        try:
            ((event, partition_key),) = await eventually(charged)
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    assert event["type"] == "orders.payment.charged"
    assert event["data"]["amountCents"] == 2500
    assert event["partitionkey"] == body["card"]
    # The hub was given the card's hashed key (the SDK reads the annotation back as bytes).
    assert partition_key == hashed(body["card"]).encode()


async def test_out_of_stock_after_charge_is_refunded_over_real_service_bus(
        api: Api, azurite: Azurite) -> None:
    status, _ = await api.post("simulators/inventory/mode",
                               {"mode": "out-of-stock-after-charge", "scope": "sku:sku-gone"})
    assert status == 200
    order_id = await api.place(order_body(sku="sku-gone"))
    order = await api.settled(order_id)
    assert order["status"] == "compensated"
    storage = azurite.connection_string
    assert movements(storage, "orderspayments", f"charge-{order_id}", "charge") == 1
    assert movements(storage, "orderspayments", f"charge-{order_id}", "refund") == 1
    assert movements(storage, "ordersinventory", f"reservation-{order_id}", "release") == 1
    compensations = [e["step"] for e in order["timeline"]
                     if e["phase"] == "compensation" and e["status"] == "compensated"]
    assert compensations == ["charge_payment", "reserve_stock"]


async def test_commands_delivered_twice_by_the_broker_charge_once(
        api: Api, devstack: DevStack, azurite: Azurite, orders_host: FunctionsHost) -> None:
    devstack.faults.deliver_twice(entities.PAYMENTS_QUEUE, times=10)
    order_id = await api.place(order_body())
    assert (await api.settled(order_id))["status"] == "completed"
    payment_calls = [r for r in orders_host.invoker.records
                     if r.function_name == "orders_payments"]
    assert len(payment_calls) >= 2
    assert movements(azurite.connection_string, "orderspayments", f"charge-{order_id}",
                     "charge") == 1


async def test_a_flaky_gateway_is_tried_twice_later_and_the_third_attempt_charges_once(
        api: Api, azurite: Azurite, orders_host: FunctionsHost) -> None:
    card = f"tok-flaky-{uuid.uuid4().hex[:6]}"
    status, _ = await api.post("simulators/payments/mode",
                               {"mode": "flaky", "scope": f"card:{card}"})
    assert status == 200
    order_id = await api.place(order_body(card=card))
    assert (await api.settled(order_id))["status"] == "completed"
    # Each flaky attempt was put back for later (a copy scheduled ahead, the original
    # completed): no invocation failed, so no delivery was spent. This host may also run
    # commands earlier tests left on the module's queues (all succeed), hence no exact list.
    payment_calls = [r.succeeded for r in orders_host.invoker.records
                     if r.function_name == "orders_payments"]
    assert False not in payment_calls and len(payment_calls) >= 3
    assert movements(azurite.connection_string, "orderspayments", f"charge-{order_id}",
                     "charge") == 1


async def test_an_invalid_service_command_is_dead_lettered_at_once_with_its_reason(
        api: Api, devstack: DevStack, azurite: Azurite, orders_host: FunctionsHost) -> None:
    """The services' trigger settles itself: the invalid command is dead-lettered on its
    first delivery with the schema's reason, not redelivered up to MaxDeliveryCount."""
    ledger = TableServiceClient.from_connection_string(
        azurite.connection_string).get_table_client("orderspayments")

    def ledger_rows() -> list[dict[str, Any]]:
        try:
            return [dict(e) for e in ledger.list_entities()]
        except ResourceNotFoundError:  # not created until the services' first invocation
            return []

    before = ledger_rows()
    saga_id = f"o-{uuid.uuid4().hex[:8]}"
    invalid = Envelope.new("orders.payments.charge-payment", {
        "sagaId": saga_id, "step": "charge_payment", "phase": "action", "attempt": 1,
        "replyTo": "orders-saga", "payload": {"orderId": saga_id}}, source="/x", subject=saga_id)
    async with ServiceBusClient.from_connection_string(devstack.connection_string) as client:
        async with client.get_queue_sender(entities.PAYMENTS_QUEUE) as sender:
            await sender.send_messages(ServiceBusMessage(
                encode_body(invalid), message_id=invalid.id,
                content_type=CLOUDEVENTS_CONTENT_TYPE))

        async def dead_lettered() -> list[Any] | None:
            async with client.get_queue_receiver(
                    entities.PAYMENTS_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER
            ) as receiver:
                received = await receiver.receive_messages(max_message_count=10,
                                                           max_wait_time=0.5)
                for message in received:
                    await receiver.complete_message(message)
                return [m for m in received if m.message_id == invalid.id] or None

        (dead,) = await eventually(dead_lettered)
    assert (dead.dead_letter_reason, bool(dead.dead_letter_error_description)) == (
        "SchemaViolation", True)
    failed = [r for r in orders_host.invoker.records
              if r.function_name == "orders_payments" and not r.succeeded]
    assert failed == []
    # Only this command's traces: the module's host still settles earlier tests' sagas, whose
    # rows in the same ledger change meanwhile (an outbox mark was written in one CI run).
    def of_this_command(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if saga_id in json.dumps(r, default=str)
                or invalid.id in json.dumps(r, default=str)]

    assert of_this_command(ledger_rows()) == of_this_command(before) == []


async def test_a_step_past_its_deadline_is_compensated_by_a_scheduled_timeout(
        api: Api) -> None:
    card = f"tok-slow-{uuid.uuid4().hex[:6]}"
    status, _ = await api.post("simulators/payments/mode",
                               {"mode": "slow", "scope": f"card:{card}", "slowSeconds": 600})
    assert status == 200
    order_id = await api.place(order_body(card=card))
    order = await api.settled(order_id)
    assert order["status"] == "compensated"
    assert ("charge_payment", "timed_out") in statuses(order)


async def test_a_poison_message_is_dead_lettered_at_once_with_its_reason_over_real_service_bus(
        api: Api, devstack: DevStack) -> None:
    async with ServiceBusClient.from_connection_string(devstack.connection_string) as client:
        async with client.get_queue_sender(entities.SAGA_QUEUE) as sender:
            await sender.send_messages(ServiceBusMessage(b"{not json",
                                                         message_id=str(uuid.uuid4())))

        async def dead_lettered() -> list[Any] | None:
            async with client.get_queue_receiver(
                    entities.SAGA_QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
                received = await receiver.receive_messages(max_message_count=10,
                                                           max_wait_time=0.5)
                for message in received:
                    await receiver.complete_message(message)
                return received

        dead = await eventually(dead_lettered)
    assert [str(message) for message in dead] == ["{not json"]
    # The SDK-type trigger dead-letters it itself, through the host's settlement service.
    assert dead[0].dead_letter_reason == "InvalidEncoding"  # not MaxDeliveryCountExceeded


async def test_a_fraud_alert_on_the_topic_compensates_a_running_order(
        api: Api, devstack: DevStack, azurite: Azurite) -> None:
    card = f"tok-held-{uuid.uuid4().hex[:6]}"
    status, _ = await api.post("simulators/payments/mode",
                               {"mode": "slow", "scope": f"card:{card}", "slowSeconds": 600})
    assert status == 200
    order_id = await api.place(order_body(card=card))

    async def charging() -> bool | None:
        _, order = await api.get(f"orders/{order_id}")
        return True if order["step"] == "charge_payment" else None

    await eventually(charging)
    alert = Envelope.new(fraud.ALERT_RAISED, {"orderId": order_id, "reason": "velocity"},
                         source=fraud.SOURCE, subject=order_id)
    async with ServiceBusClient.from_connection_string(devstack.connection_string) as client, \
            client.get_topic_sender(entities.FRAUD_ALERTS_TOPIC) as sender:
        await sender.send_messages(ServiceBusMessage(
            encode_body(alert), message_id=alert.id, content_type=CLOUDEVENTS_CONTENT_TYPE))
    order = await api.settled(order_id)
    assert order["status"] == "compensated"
    assert "fraud alert" in order["failure"]["reason"]
    assert movements(azurite.connection_string, "orderspayments", f"charge-{order_id}",
                     "refund") == 1
