"""The triage agent on the local cloud: helpdesk events published with the official
`azure-eventgrid` client to devstack's Event Grid, delivered to `function_app.py` in
devstack's Functions host, classified by devstack's local model, and routed on devstack's
Service Bus to each team's subscription. Deadlines are generous; nothing is timed."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.data.tables import TableServiceClient
from azure.eventgrid.aio import EventGridPublisherClient
from azure.servicebus.aio import ServiceBusClient

from agents.contracts import triage as contracts
from agents.triage import bootstrap
from agents.triage.handlers import REJECTED_PARTITION, REJECTED_PREFIX
from agents.triage.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from devstack.azurite import Azurite, free_port
from devstack.eventgrid import EventGridConfig, LocalEventGrid
from devstack.eventgrid.config import DEV_TOPIC_KEY
from devstack.host import FunctionsHost
from devstack.llm import LocalModelServer
from devstack.server import DevStack

ROOT = Path(__file__).resolve().parents[3]
SECRET = "triage-test-webhook-secret"
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


async def delivered(ids: list[str], event_id: str, times: int) -> bool:
    return ids.count(event_id) >= times


@pytest.fixture(scope="module")
def devstack() -> Iterator[DevStack]:
    with DevStack([ROOT / "infra/entities/servicebus.json",
                   ROOT / "infra/entities/eventhubs.json"], port=0) as stack:
        yield stack


class Cloud:
    def __init__(self, host: FunctionsHost, grid: LocalEventGrid, devstack: DevStack,
                 azurite: Azurite, model: LocalModelServer) -> None:
        self.host, self.grid, self.devstack = host, grid, devstack
        self.azurite, self.model = azurite, model

    async def publish(self, *events: CloudEvent[Any] | dict[str, Any]) -> None:
        async with EventGridPublisherClient(self.grid.topic_endpoint("triage-helpdesk"),
                                            AzureKeyCredential(DEV_TOPIC_KEY)) as client:
            await client.send(list(events))

    async def received(self, subscription: str, ticket_id: str, *, expected: int = 1,
                       within: float = 30.0) -> list[dict[str, Any]]:
        """The CloudEvents about `ticket_id` on a `triage-tickets` subscription (completed),
        once `expected` arrived or `within` seconds passed."""
        found: list[dict[str, Any]] = []
        async with ServiceBusClient.from_connection_string(self.devstack.connection_string) \
                as bus, bus.get_subscription_receiver("triage-tickets", subscription) as receiver:
            deadline = time.monotonic() + within
            while len(found) < expected and time.monotonic() < deadline:
                for message in await receiver.receive_messages(max_message_count=20,
                                                               max_wait_time=1):
                    await receiver.complete_message(message)
                    event = json.loads(b"".join(message.body))
                    if event["data"].get("ticketId") == ticket_id:
                        found.append(event)
        return found

    def rejected(self, event_id: str) -> dict[str, Any] | None:
        table = TableServiceClient.from_connection_string(
            self.azurite.connection_string).get_table_client(bootstrap.TABLE)
        rows = [row for row in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": REJECTED_PARTITION})
            if row["RowKey"].startswith(REJECTED_PREFIX) and row["EventId"] == event_id]
        return dict(rows[0]) if rows else None

    async def webhook(self, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.post(
                f"{self.host.base_url}/api/helpdesk/webhook", data=body,
                headers={"Content-Type": "application/json", **headers}) as response:
            return response.status, await response.json()


@pytest.fixture
async def cloud(devstack: DevStack, azurite: Azurite,
                local_model: LocalModelServer) -> AsyncIterator[Cloud]:
    saved = dict(os.environ)
    grid_port = free_port()
    topic = f"http://127.0.0.1:{grid_port}/topics/triage-helpdesk/api/events"
    host = FunctionsHost(ROOT, functions=("triage_ticket_received", "triage_helpdesk_webhook"),
                         settings={
        "AzureWebJobsStorage": azurite.connection_string,
        bootstrap.STATE_STORAGE: azurite.connection_string,
        bootstrap.SERVICEBUS: devstack.connection_string,
        f"{bootstrap.EVENTGRID}__topicEndpointUri": topic,
        f"{bootstrap.EVENTGRID}__topicKey": DEV_TOPIC_KEY,
        "HELPDESK_WEBHOOK_SECRET": SECRET,
        "LLM_PROVIDER": "local", "AZURE_OPENAI_ENDPOINT": local_model.base_url,
        "AZURE_OPENAI_DEPLOYMENT": "chat", "LLM_TIMEOUT_SECONDS": "2", "LLM_MAX_RETRIES": "0",
    })
    await host.start()
    try:
        async with LocalEventGrid(EventGridConfig.load(ROOT / "infra/entities/eventgrid.json"),
                                  function_endpoint=host.event_grid_webhook,
                                  dead_letter_storage=azurite.connection_string,
                                  delay_scale=0.001, port=grid_port) as grid:
            yield Cloud(host, grid, devstack, azurite, local_model)
    finally:
        await host.stop()
        os.environ.clear()
        os.environ.update(saved)


def ticket(title: str, description: str, *, ticket_id: str | None = None, version: int = 1,
           event_type: str = contracts.TICKET_CREATED) -> CloudEvent[dict[str, Any]]:
    ticket_id = ticket_id or f"T-{uuid.uuid4().hex[:8]}"
    return CloudEvent(source=contracts.HELPDESK_SOURCE, type=event_type,
                      subject=f"tickets/{ticket_id}",
                      data={"ticketId": ticket_id, "version": version, "title": title,
                            "description": description,
                            "requester": {"email": "ana@example.com", "tier": "standard"}})


async def test_tickets_published_to_event_grid_reach_their_teams_subscriptions(cloud):
    billing = ticket("Charged twice", "My invoice shows two charges for one refund")
    account = ticket("Locked out", "Password reset fails and my account is locked")
    await cloud.publish(billing, account)
    [to_billing] = await cloud.received("billing", billing.data["ticketId"])
    [to_account] = await cloud.received("account", account.data["ticketId"])
    assert to_billing["type"] == contracts.TICKET_CLASSIFIED
    assert to_billing["data"]["team"] == "billing" and to_billing["data"]["manual"] is False
    assert to_billing["causationid"] == billing.id
    assert to_account["data"]["team"] == "account"


async def test_an_urgent_ticket_is_routed_and_pages_the_team(cloud):
    outage = ticket("Site down", "Everything is down, we cannot work at all")
    await cloud.publish(outage)
    [routed] = await cloud.received("platform", outage.data["ticketId"])
    [page] = await cloud.received("urgent", outage.data["ticketId"])
    assert routed["data"]["priority"] == "urgent"
    assert page["type"] == contracts.PAGE_RAISED and page["data"]["team"] == "platform"


async def test_the_same_event_delivered_twice_is_routed_once(cloud):
    event = ticket("Refund please", "I was charged for a cancelled plan, refund the payment")
    await cloud.publish(event)
    assert len(await cloud.received("billing", event.data["ticketId"])) == 1
    await cloud.publish(event)
    delivery = cloud.grid.delivery("triage-helpdesk", "triage")
    await eventually(lambda: delivered(delivery.stats.delivered, event.id, 2))
    # The second delivery has been answered: anything it published is on the topic by now.
    assert await cloud.received("billing", event.data["ticketId"], within=2) == []
    assert cloud.model.requests["chat"] == 1


async def test_an_invalid_event_is_recorded_with_its_reason_and_not_retried(cloud):
    bad = ticket("No requester", "The event misses the requester")
    del bad.data["requester"]  # type: ignore[index]
    await cloud.publish(bad)
    delivery = cloud.grid.delivery("triage-helpdesk", "triage")
    await eventually(lambda: delivered(delivery.stats.delivered, bad.id, 1))
    rejected = cloud.rejected(bad.id)
    assert rejected is not None and rejected["Reason"] == "SchemaViolation"
    assert "requester" in rejected["Description"]
    assert bad.id not in delivery.stats.dead_lettered


async def test_an_llm_outage_sends_tickets_to_manual_triage_at_once(cloud):
    cloud.model.faults.outage(60, deployment="chat")
    event = ticket("Charged twice", "Two charges on my invoice")
    await cloud.publish(event)
    [manual] = await cloud.received("manual-triage", event.data["ticketId"])
    assert manual["data"]["manual"] is True
    assert manual["data"]["manualReason"].startswith("model unavailable")


async def test_a_signed_webhook_is_accepted_and_its_ticket_routed_through_event_grid(cloud):
    ticket_id = f"T-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"id": f"d-{uuid.uuid4().hex}", "event": "ticket.created",
                       "ticket": {"ticketId": ticket_id, "version": 1, "title": "Invoice wrong",
                                  "description": "The invoice price is wrong, refund me",
                                  "requester": {"email": "bo@example.com"}}}).encode()
    timestamp = str(int(time.time()))
    status, answer = await cloud.webhook(body, {
        SIGNATURE_HEADER: sign(SECRET.encode(), timestamp, body), TIMESTAMP_HEADER: timestamp})
    assert status == 202, answer
    [routed] = await cloud.received("billing", ticket_id)
    assert routed["data"]["team"] == "billing"


async def test_a_forged_webhook_is_refused_with_401(cloud):
    body = b'{"id": "d-forged", "event": "ticket.created", "ticket": {}}'
    timestamp = str(int(time.time()))
    status, _ = await cloud.webhook(body, {
        SIGNATURE_HEADER: sign(b"not-the-secret", timestamp, body), TIMESTAMP_HEADER: timestamp})
    assert status == 401
