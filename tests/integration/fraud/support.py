"""The fraud agent's local cloud for the integration tests: devstack's Functions host running
`fraud_score_payments`, payments published with the backbone's Event Hubs publisher, the
state table, the alerts subscription and the host's checkpoints."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.eventhub import EventHubProducerClient
from azure.servicebus.aio import ServiceBusClient
from azure.storage.blob import ContainerClient

from agents.backbone.envelope import Envelope
from agents.backbone.outbox import OutboxRow
from agents.backbone.publishers import EventHubsPublisher
from agents.backbone.tables import table_key
from agents.contracts import orders
from agents.fraud import bootstrap, entities
from agents.fraud.handlers import CARD_PREFIX
from devstack.azurite import Azurite
from devstack.host import FunctionsHost
from devstack.host.eventhubs import CHECKPOINT_CONTAINER
from devstack.server import DevStack

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


async def eventually(probe: Callable[[], T | None], *, timeout: float = 60.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = probe()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.2)


class Cloud:
    """The hub, the state table and the alerts subscription, with a host to start and stop."""

    def __init__(self, devstack: DevStack, azurite: Azurite) -> None:
        self.devstack, self.azurite = devstack, azurite
        self.host: FunctionsHost | None = None
        self.table = TableServiceClient.from_connection_string(
            azurite.connection_string).get_table_client(bootstrap.STATE_TABLE)

    def settings(self) -> dict[str, str]:
        return {"AzureWebJobsStorage": self.azurite.connection_string,
                entities.STATE_STORAGE: self.azurite.connection_string,
                entities.EVENTHUBS_CONNECTION: self.devstack.connection_string,
                entities.SERVICEBUS_CONNECTION: self.devstack.connection_string,
                "LLM_PROVIDER": "none"}

    async def start(self) -> None:
        self.host = FunctionsHost(ROOT, functions=("fraud_score_payments",),
                                  settings=self.settings())
        await self.host.start()

    def reset(self) -> None:
        """Marks and checkpoints of another devstack (its hub restarted at sequence 0) would
        hide this one's events."""
        TableServiceClient.from_connection_string(self.azurite.connection_string).delete_table(
            bootstrap.STATE_TABLE)
        self.forget_checkpoints()

    async def stop(self) -> None:
        if self.host is not None:
            await self.host.stop()
            self.host = None

    def forget_checkpoints(self) -> None:
        """As if the host died after scoring but before checkpointing."""
        container = ContainerClient.from_connection_string(self.azurite.connection_string,
                                                           CHECKPOINT_CONTAINER)
        if not container.exists():
            return
        for blob in container.list_blobs():
            if entities.CONSUMER_GROUP in blob.name:
                container.delete_blob(blob.name)

    def publish(self, *payments: Envelope) -> None:
        rows = [OutboxRow.new(p.partitionkey or "", p, destination=entities.PAYMENTS_HUB,
                              scheduled_at=None, created_at=datetime.now(UTC))
                for p in payments]
        producer = EventHubProducerClient.from_connection_string(
            self.devstack.connection_string, eventhub_name=entities.PAYMENTS_HUB)
        with EventHubsPublisher({entities.PAYMENTS_HUB: producer}) as publisher:
            publisher.publish(rows)

    def window(self, card: str) -> dict[str, Any] | None:
        rows = list(self.table.query_entities(
            "RowKey eq @rk", parameters={"rk": CARD_PREFIX + table_key(card)}))
        return json.loads(rows[0]["state"]) if rows else None

    def scored(self, card: str, count: int) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            try:
                window = self.window(card)
            except ResourceNotFoundError:
                return None
            return window if window is not None and window["count"] >= count else None
        return probe

    async def alerts(self, order_prefix: str, *, within: float = 3.0) -> list[dict[str, Any]]:
        """The alerts for orders starting with `order_prefix` on the `orders` subscription
        (completed), waiting `within` seconds for more."""
        found: list[dict[str, Any]] = []
        async with ServiceBusClient.from_connection_string(self.devstack.connection_string
                                                           ) as bus, \
                bus.get_subscription_receiver(entities.ALERTS_TOPIC, "orders") as receiver:
            deadline = asyncio.get_running_loop().time() + within
            while asyncio.get_running_loop().time() < deadline:
                for message in await receiver.receive_messages(max_message_count=20,
                                                               max_wait_time=0.5):
                    await receiver.complete_message(message)
                    event = json.loads(b"".join(message.body))
                    if event["data"]["orderId"].startswith(order_prefix):
                        found.append(event)
        return found


def payment(card: str, n: int, *, at: datetime | None = None, event_id: str | None = None,
            location: dict[str, Any] | None = None) -> Envelope:
    data: dict[str, Any] = {"orderId": f"{card}-o{n}", "chargeId": f"{card}-c{n}",
                            "customerId": "cu-1", "card": card, "amountCents": 1_000}
    if location is not None:
        data["location"] = location
    return Envelope.new(orders.PAYMENT_CHARGED, data, source="/tests/payments",
                        subject=data["orderId"], partitionkey=card,
                        id=event_id or f"{card}-pay-{n}", time=at or T0 + timedelta(seconds=n))


def card() -> str:
    return f"tok-{uuid.uuid4().hex[:8]}"
