"""The simulated inventory, payment gateway and shipping services on the local cloud
(devstack's Service Bus and Functions host, Azurite): their triggers settle each command
themselves, so poison is dead-lettered at once with the app's reason and a flaky service's
retries spend none of the command's deliveries; the services composed from app settings
close what they opened.

Each group runs on servers of its own: these commands, sagas and switches have no table
prefix, and another module's host would pick them up. Waits are on conditions, never timed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from agents.backbone.settlement import Settlement
from agents.orders import bootstrap, entities, simulated
from agents.orders.edge import place_order_request
from agents.orders.handlers import place_order
from agents.orders.model import Service
from agents.orders.simulated import bootstrap as simulated_bootstrap
from agents.orders.simulated.blueprint import on_command
from agents.orders.simulated.modes import Mode, Switch
from devstack.azurite import Azurite
from devstack.host import FunctionsHost
from devstack.server import DevStack
from tests.integration.orders.stack import max_delivery_count, order_body

ROOT = Path(__file__).resolve().parents[3]
ENTITIES = ROOT / "infra" / "entities"
FUNCTION_KEY = "simulated-services-test-key"
STEP_TIMEOUT_SECONDS = 60
SETTLED = 30.0  # bound on the wait for the server to see the client's connections close
T = TypeVar("T")


def app_settings(devstack: DevStack, storage: Azurite) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": storage.connection_string,
        entities.STATE_STORAGE: storage.connection_string,
        entities.CONNECTION: devstack.connection_string,
        entities.FRAUD_CONNECTION: devstack.connection_string,
        entities.FRAUD_EVENTHUBS: devstack.connection_string,
        bootstrap.STEP_TIMEOUT_SETTING: str(STEP_TIMEOUT_SECONDS),
        simulated.SETTING: "true",
        "DEVSTACK_HOST_FUNCTION_KEY": FUNCTION_KEY,
    }


def servers() -> Iterator[tuple[DevStack, Azurite]]:
    with DevStack([ENTITIES / "servicebus.json", ENTITIES / "eventhubs.json"],
                  port=0) as devstack, Azurite() as storage:
        yield devstack, storage


cloud = pytest.fixture(scope="module", name="cloud")(servers)
quiet_cloud = pytest.fixture(name="quiet_cloud")(servers)
"""Servers with no Functions host: the test itself receives and settles the commands."""


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 60.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


@pytest.fixture
async def host(cloud: tuple[DevStack, Azurite]) -> AsyncIterator[FunctionsHost]:
    async with FunctionsHost(ROOT, settings=app_settings(*cloud)) as running:
        yield running


def failed_invocations(host: FunctionsHost, function: str) -> list[str | None]:
    return [r.error for r in host.invoker.records
            if r.function_name == function and not r.succeeded]


def movements(storage: Azurite, table: str, ledger_key: str, kind: str) -> int:
    client = TableServiceClient.from_connection_string(
        storage.connection_string).get_table_client(table)
    return len(list(client.query_entities("PartitionKey eq @pk and movement eq @kind",
                                          parameters={"pk": ledger_key, "kind": kind})))


def dead_letters(devstack: DevStack, queue: str) -> list[Any]:
    with ServiceBusClient.from_connection_string(devstack.connection_string) as client, \
            client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        return list(dlq.peek_messages(max_message_count=50))


POISON = [
    (entities.INVENTORY_QUEUE, json.dumps({
        "specversion": "1.0", "id": "unknown-type", "source": "/tests", "type":
        "orders.inventory.teleport-stock", "data": {}}).encode(), "UnknownEventType"),
    (entities.PAYMENTS_QUEUE, b'{"orderId": "not a cloud event"}', "NotACloudEvent"),
    (entities.SHIPPING_QUEUE, b"{not json", "InvalidEncoding"),
]


@pytest.mark.parametrize(("queue", "body", "reason"), POISON, ids=[p[0] for p in POISON])
async def test_poison_on_a_service_queue_is_dead_lettered_at_once_with_the_apps_reason(
        cloud: tuple[DevStack, Azurite], host: FunctionsHost, queue: str, body: bytes,
        reason: str) -> None:
    devstack, _ = cloud
    message_id = str(uuid.uuid4())
    with ServiceBusClient.from_connection_string(devstack.connection_string) as client, \
            client.get_queue_sender(queue) as sender:
        sender.send_messages(ServiceBusMessage(body, message_id=message_id))

    async def dead_lettered() -> list[Any] | None:
        mine = [m for m in await asyncio.to_thread(dead_letters, devstack, queue)
                if m.message_id == message_id]
        return mine or None

    (letter,) = await eventually(dead_lettered)
    assert (letter.dead_letter_reason, bool(letter.dead_letter_error_description)) == (
        reason, True)
    function = {entities.INVENTORY_QUEUE: "orders_inventory",
                entities.PAYMENTS_QUEUE: "orders_payments",
                entities.SHIPPING_QUEUE: "orders_shipping"}[queue]
    assert failed_invocations(host, function) == []  # not redelivered up to MaxDeliveryCount


def placed_reserve_command(devstack: DevStack, storage: Azurite, card: str) -> str:
    """An order placed by the agent composed from app settings: its first command, reserve
    stock, is on orders-inventory. Returns the order id."""
    order = place_order_request(str(uuid.uuid4()), json.dumps(order_body(card=card)).encode())
    with bootstrap.bootstrap(app_settings(devstack, storage)) as agent:
        place_order(order, agent)
    return order.order_id


def test_a_command_survives_a_flaky_service_then_max_delivery_count_less_one_failures(
        quiet_cloud: tuple[DevStack, Azurite]) -> None:
    devstack, storage = quiet_cloud
    card = f"tok-flaky-{uuid.uuid4().hex[:6]}"
    order_id = placed_reserve_command(devstack, storage, card)
    failures = max_delivery_count(entities.INVENTORY_QUEUE) - 1
    settlements: list[Settlement] = []
    with simulated_bootstrap.bootstrap(app_settings(devstack, storage)) as services, \
            ServiceBusClient.from_connection_string(devstack.connection_string) as client, \
            client.get_queue_receiver(entities.INVENTORY_QUEUE) as receiver:
        services.switchboard.set(Service.INVENTORY, f"card:{card}", Switch(Mode.FLAKY))
        while Settlement.COMPLETED not in settlements:
            received = receiver.receive_messages(max_message_count=1, max_wait_time=30)
            assert received, f"the command left orders-inventory after {settlements}"
            (message,) = received
            if len(settlements) == 2 and failures:
                # What a crashed host or a failing handler leaves: the delivery is spent.
                receiver.abandon_message(message)
                failures -= 1
                continue
            settlements.append(on_command(message, receiver, services, Service.INVENTORY))
    assert settlements == [Settlement.RESCHEDULED, Settlement.RESCHEDULED, Settlement.COMPLETED]
    assert dead_letters(devstack, entities.INVENTORY_QUEUE) == []
    assert movements(storage, "ordersinventory", f"reservation-{order_id}", "hold") == 1


def open_connections(devstack: DevStack) -> int:
    return devstack.call(lambda: len(devstack.amqp.connections))


def test_leaving_the_bootstrapped_services_closes_their_connections(
        quiet_cloud: tuple[DevStack, Azurite]) -> None:
    devstack, storage = quiet_cloud
    card = f"tok-flaky-{uuid.uuid4().hex[:6]}"
    placed_reserve_command(devstack, storage, card)
    settlements: list[Settlement] = []
    with ServiceBusClient.from_connection_string(devstack.connection_string) as client, \
            client.get_queue_receiver(entities.INVENTORY_QUEUE) as receiver:
        before = open_connections(devstack)
        with simulated_bootstrap.bootstrap(app_settings(devstack, storage)) as services:
            # The first attempt is put back through the retry sender, the next one replies
            # through the publisher: both connect.
            services.switchboard.set(Service.INVENTORY, f"card:{card}", Switch(Mode.FLAKY))
            while Settlement.COMPLETED not in settlements:
                (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=30)
                settlements.append(on_command(message, receiver, services, Service.INVENTORY))
            assert open_connections(devstack) > before
        with pytest.raises(ValueError, match="already been closed"):  # the Table client
            services.switchboard.lookup(Service.INVENTORY, ["*"])
        deadline = time.monotonic() + SETTLED
        while open_connections(devstack) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_connections(devstack) == before
