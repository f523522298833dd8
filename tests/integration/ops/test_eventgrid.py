"""`python -m agents.ops eventgrid`: real dead-letter blobs, written by devstack's local Event
Grid (the app's triage topic, its subscription pointed at a webhook that answers 400 so the
event is dead-lettered at once), listed and replayed back through the topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid.aio import EventGridPublisherClient
from azure.storage.blob import BlobServiceClient

from agents.ops.cli import SKIPPED
from devstack.eventgrid import EventGridConfig, LocalEventGrid
from devstack.eventgrid.config import DEV_TOPIC_KEY
from tests.integration.support import RecordingEndpoint

ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities"
TOPIC = "triage-helpdesk"
CONTAINER = "eventgrid-deadletter"


@pytest.fixture
def webhook() -> Iterator[RecordingEndpoint]:
    """The subscription's endpoint: records each delivery and answers the current status."""
    with RecordingEndpoint(status=400) as endpoint:
        yield endpoint


def deliveries(webhook: RecordingEndpoint) -> list[dict]:
    return [json.loads(body) for _, body in webhook.received]


@pytest.fixture
def dead_letter_container(azurite):
    """An empty dead-letter container: Azurite lives for the whole session."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(CONTAINER)
        if container.exists():
            container.delete_container()
    return CONTAINER


@pytest.fixture
async def grid(webhook, azurite, dead_letter_container):
    """The app's Event Grid config, its subscription delivering to the webhook."""
    document = json.loads((ENTITIES / "eventgrid.json").read_text())
    [topic] = document["UserConfig"]["Topics"]
    topic["Subscriptions"][0]["Destination"] = {
        "EndpointType": "WebHook",
        "EndpointUrl": f"http://127.0.0.1:{webhook.port}/hook"}
    async with LocalEventGrid(EventGridConfig.parse(document),
                              dead_letter_storage=azurite.connection_string,
                              delay_scale=0.001) as event_grid:
        yield event_grid


def ticket(ticket_id: str = "ticket-7") -> CloudEvent:
    return CloudEvent(source="/helpdesk", type="com.helpdesk.ticket.created", id=ticket_id,
                      subject=f"tickets/{ticket_id}", data={"title": "printer on fire"})


async def dead_lettered(grid: LocalEventGrid, *events: CloudEvent) -> None:
    """Publish through the topic and wait until Event Grid dead-lettered every event."""
    async with EventGridPublisherClient(grid.topic_endpoint(TOPIC),
                                        AzureKeyCredential(DEV_TOPIC_KEY)) as client:
        await client.send(list(events))
    delivery = grid.delivery(TOPIC, "triage")
    deadline = time.monotonic() + 20
    while len(delivery.stats.dead_lettered) < len(events) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(delivery.stats.dead_lettered) == len(events)


@pytest.fixture
def grid_ops(ops, grid):
    """The CLI with the topic endpoint settings, run off the event loop (the local Event Grid
    serves on it while the CLI's sync client publishes)."""
    extra = {"TRIAGE_EVENTGRID__topicEndpointUri": grid.topic_endpoint(TOPIC),
             "TRIAGE_EVENTGRID__topicKey": DEV_TOPIC_KEY}

    async def run(*args: str):
        return await asyncio.to_thread(ops, "eventgrid", *args, extra=extra)

    return run


async def test_list_shows_each_dead_lettered_event_with_reason_and_attempts(grid, grid_ops):
    await dead_lettered(grid, ticket())
    result = await grid_ops("list", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["blob"].startswith("TRIAGE/")
    assert {k: row[k] for k in ("eventId", "type", "deadLetterReason", "deliveryAttempts",
                                "lastHttpStatusCode", "replayedAt")} == {
        "eventId": "ticket-7", "type": "com.helpdesk.ticket.created",
        "deadLetterReason": "UndeliverableDueToHttpBadRequest", "deliveryAttempts": 1,
        "lastHttpStatusCode": 400, "replayedAt": None}


async def test_show_prints_the_event_without_the_dead_letter_fields(grid, grid_ops):
    await dead_lettered(grid, ticket())
    [row] = json.loads((await grid_ops("list", "--json")).output)
    result = await grid_ops("show", row["blob"])
    assert result.exit_code == 0, result.output
    [shown] = json.loads(result.output)
    assert shown["event"]["data"] == {"title": "printer on fire"}
    assert "deadLetterReason" not in shown["event"]


async def test_replay_delivers_the_event_again_and_marks_the_blob(grid, grid_ops, webhook):
    await dead_lettered(grid, ticket())
    webhook.status = 200
    result = await grid_ops("replay", "--all", "--json")
    assert result.exit_code == 0, result.output
    assert [r["outcome"] for r in json.loads(result.output)] == ["replayed"]
    deadline = time.monotonic() + 20
    while len(webhook.received) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert [d["id"] for d in deliveries(webhook)] == ["ticket-7", "ticket-7"]
    assert deliveries(webhook)[1]["data"] == {"title": "printer on fire"}
    [row] = json.loads((await grid_ops("list", "--json")).output)
    assert row["replayedAt"] is not None


async def test_a_second_replay_skips_a_blob_already_replayed(grid, grid_ops, webhook):
    await dead_lettered(grid, ticket())
    webhook.status = 200
    [row] = json.loads((await grid_ops("list", "--json")).output)
    first = await grid_ops("replay", row["blob"])
    second = await grid_ops("replay", row["blob"], "--json")
    assert first.exit_code == 0, first.output
    assert second.exit_code == SKIPPED
    assert "already replayed" in json.loads(second.output)[0]["detail"]
    delivered = grid.delivery(TOPIC, "triage").stats.delivered
    deadline = time.monotonic() + 20
    while not delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert delivered == ["ticket-7"]


async def test_dry_run_publishes_nothing_and_leaves_the_blob_unmarked(grid, grid_ops, webhook):
    await dead_lettered(grid, ticket())
    result = await grid_ops("replay", "--all", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["detail"] == f"to topic {TOPIC}"
    assert len(webhook.received) == 1
    [row] = json.loads((await grid_ops("list", "--json")).output)
    assert row["replayedAt"] is None


async def test_a_refused_publish_is_a_failure_and_leaves_the_blob_unmarked(grid, ops, webhook):
    await dead_lettered(grid, ticket())
    wrong_key = {"TRIAGE_EVENTGRID__topicEndpointUri": grid.topic_endpoint(TOPIC),
                 "TRIAGE_EVENTGRID__topicKey": "not-the-topic-key"}
    result = await asyncio.to_thread(ops, "eventgrid", "replay", "--all", "--json",
                                     extra=wrong_key)
    assert result.exit_code == 1
    [failed] = json.loads(result.output)
    assert failed["outcome"] == "failed" and "401" in failed["detail"]
    listed = await asyncio.to_thread(ops, "eventgrid", "list", "--json")
    assert json.loads(listed.output)[0]["replayedAt"] is None
    assert len(webhook.received) == 1
