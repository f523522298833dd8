"""Event Grid: the local Event Grid fed by the official publisher, delivering to the host."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, generate_sas
from azure.eventgrid.aio import EventGridPublisherClient

from devstack.azurite import free_port
from devstack.eventgrid import EventGridConfig, LocalEventGrid
from devstack.eventgrid.config import DEV_TOPIC_KEY
from tests.devstack.manual_clock import ManualClock
from tests.devstack_host.helpers import eventually, read_json_blobs

CREATED = "com.helpdesk.ticket.created"
UPDATED = "com.helpdesk.ticket.updated"
REPO = Path(__file__).resolve().parents[2]


def grid_config(dead_letter: str, *, max_attempts: int = 3, ttl_minutes: int = 1440,
                webhook: str | None = None) -> EventGridConfig:
    destination = ({"EndpointType": "WebHook", "EndpointUrl": webhook} if webhook else
                   {"EndpointType": "AzureFunction", "FunctionName": "triage_ticket_received"})
    return EventGridConfig.parse({"UserConfig": {"Topics": [
        {"Name": "triage-helpdesk", "InputSchema": "CloudEventSchemaV1_0", "Subscriptions": [{
            "Name": "triage", "Destination": destination,
            "Filter": {"IncludedEventTypes": [CREATED, UPDATED]},
            "RetryPolicy": {"MaxDeliveryAttempts": max_attempts,
                            "EventTimeToLiveInMinutes": ttl_minutes},
            "DeadLetterDestination": {"EndpointType": "StorageBlob",
                                      "BlobContainerName": dead_letter}}]},
        {"Name": "legacy-grid", "InputSchema": "EventGridSchema", "Subscriptions": [{
            "Name": "grid", "Destination": {"EndpointType": "AzureFunction",
                                            "FunctionName": "grid_event_received"},
            "Filter": {"SubjectBeginsWith": "/tickets/"}}]},
    ]}})


@pytest.fixture
def dead_letter_container() -> str:
    return f"deadletter{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def grid(start_host, azurite, dead_letter_container):
    host = await start_host("triage_ticket_received", "grid_event_received")
    async with LocalEventGrid(grid_config(dead_letter_container),
                              function_endpoint=host.event_grid_webhook,
                              dead_letter_storage=azurite.connection_string,
                              delay_scale=0.001) as event_grid:
        yield event_grid


def ticket(event_type: str = CREATED, **data: object) -> CloudEvent[dict[str, object]]:
    return CloudEvent(source="/helpdesk", type=event_type, subject=f"/tickets/{uuid.uuid4()}",
                      data={"title": "printer on fire", **data})


async def published(event_grid: LocalEventGrid, topic: str, events: list[Any],
                    credential=None) -> None:
    async with EventGridPublisherClient(event_grid.topic_endpoint(topic),
                                        credential or AzureKeyCredential(DEV_TOPIC_KEY)) as c:
        await c.send(events)


async def observed(azurite, prefix: str, event_id: str) -> list[dict[str, Any]]:
    found = await read_json_blobs(azurite.connection_string, "observations", prefix)
    return [seen for seen in found if seen["id"] == event_id]


async def test_cloud_event_published_with_the_sdk_reaches_the_function(grid, azurite):
    event = ticket()
    await published(grid, "triage-helpdesk", [event])
    seen = await eventually(lambda: observed(azurite, "tickets/", event.id))
    assert seen == [{"id": event.id, "type": CREATED, "subject": event.subject,
                     "ticket": {"title": "printer on fire"}}]


async def test_event_grid_schema_event_with_a_sas_token_reaches_the_function(grid, azurite):
    endpoint = grid.topic_endpoint("legacy-grid")
    token = generate_sas(endpoint, DEV_TOPIC_KEY, datetime.now(UTC) + timedelta(hours=1))
    event = EventGridEvent(subject="/tickets/42", event_type="Helpdesk.TicketCreated",
                           data={"n": 42}, data_version="1.0")
    await published(grid, "legacy-grid", [event], AzureSasCredential(token))
    seen = await eventually(lambda: observed(azurite, "grid/", str(event.id)))
    assert seen[0]["type"] == "Helpdesk.TicketCreated"
    assert seen[0]["data"] == {"n": 42}


async def test_subject_filter_keeps_other_subjects_away(grid):
    outside = EventGridEvent(subject="/billing/1", event_type="X", data={}, data_version="1")
    inside = EventGridEvent(subject="/tickets/1", event_type="X", data={}, data_version="1")
    await published(grid, "legacy-grid", [outside, inside])
    delivery = grid.delivery("legacy-grid", "grid")
    await eventually(lambda: delivery.stats.delivered)
    assert delivery.stats.delivered == [str(inside.id)]
    assert delivery.stats.attempts == 1


async def test_event_type_outside_the_subscription_filter_is_not_delivered(grid):
    ignored, wanted = ticket("com.helpdesk.ticket.deleted"), ticket(UPDATED)
    await published(grid, "triage-helpdesk", [ignored, wanted])
    delivery = grid.delivery("triage-helpdesk", "triage")
    await eventually(lambda: delivery.stats.delivered)
    assert delivery.stats.delivered == [wanted.id]
    assert delivery.stats.attempts == 1


async def test_wrong_topic_key_is_refused(grid):
    with pytest.raises(ClientAuthenticationError):
        await published(grid, "triage-helpdesk", [ticket()], AzureKeyCredential("d3Jvbmc="))


async def test_event_grid_schema_event_missing_fields_is_refused_with_400(grid):
    with pytest.raises(HttpResponseError) as refused:
        await published(grid, "legacy-grid", [{"id": "1", "subject": "/tickets/1"}])
    assert refused.value.status_code == 400


async def test_failing_function_is_retried_then_dead_lettered_in_azure_layout(
        grid, azurite, dead_letter_container):
    event = ticket(poison=True)
    await published(grid, "triage-helpdesk", [event])
    records = await eventually(lambda: read_json_blobs(azurite.connection_string,
                                                       dead_letter_container, "TRIAGE/"))
    assert len(records) == 1 and len(records[0]) == 1
    record = records[0][0]
    assert record["id"] == event.id and record["data"]["poison"] is True
    assert record["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert record["deliveryAttempts"] == 3
    assert record["lastHttpStatusCode"] == 500
    assert record["lastDeliveryOutcome"] == "GenericError"
    assert {"publishTime", "lastDeliveryAttemptTime"} <= record.keys()


async def test_dead_letter_blob_name_is_subscription_upper_case_then_unpadded_date(
        grid, azurite, dead_letter_container):
    from azure.storage.blob.aio import BlobServiceClient

    await published(grid, "triage-helpdesk", [ticket(poison=True)])
    await eventually(lambda: grid.delivery("triage-helpdesk", "triage").stats.dead_lettered)
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        names = [b.name async for b in
                 service.get_container_client(dead_letter_container).list_blobs()]
    now = datetime.now(UTC)
    assert len(names) == 1
    assert names[0].startswith(f"TRIAGE/{now.year}/{now.month}/{now.day}/")
    assert names[0].endswith(".json")


async def test_expired_event_is_dead_lettered_for_its_time_to_live(start_host, azurite,
                                                                   dead_letter_container):
    host = await start_host("triage_ticket_received")
    config = grid_config(dead_letter_container, max_attempts=30, ttl_minutes=1)
    clock = ManualClock()  # the schedule runs on it: however slow an attempt, the count holds
    async with LocalEventGrid(config, function_endpoint=host.event_grid_webhook,
                              dead_letter_storage=azurite.connection_string,
                              clock=clock) as event_grid:
        await published(event_grid, "triage-helpdesk", [ticket(poison=True)])

        def dead_letters() -> Any:
            if clock.sleepers:  # a retry waits: move time to it
                clock.advance_to_next_wake()
            return read_json_blobs(azurite.connection_string, dead_letter_container, "TRIAGE/")

        records = await eventually(dead_letters)
    record = records[0][0]
    assert record["deadLetterReason"] == "TimeToLiveExceeded"
    # attempts at 0 s, 10 s and 40 s; the next one (100 s) would be past the 60 s TTL
    assert record["deliveryAttempts"] == 3


async def test_webhook_answering_400_is_dead_lettered_without_retry(azurite,
                                                                    dead_letter_container):
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        webhook_only = grid_config(dead_letter_container,
                                   webhook=f"http://127.0.0.1:{port}/hook").topic(
                                       "triage-helpdesk")
        assert webhook_only is not None
        config = EventGridConfig(topics=(webhook_only,))
        async with LocalEventGrid(config, dead_letter_storage=azurite.connection_string,
                                  delay_scale=0.001) as event_grid:
            await published(event_grid, "triage-helpdesk", [ticket()])
            records = await eventually(lambda: read_json_blobs(
                azurite.connection_string, dead_letter_container, "TRIAGE/"))
    finally:
        await runner.cleanup()
    record = records[0][0]
    assert record["deadLetterReason"] == "UndeliverableDueToHttpBadRequest"
    assert record["deliveryAttempts"] == 1
    assert record["lastDeliveryOutcome"] == "BadRequest"


def test_the_apps_event_grid_config_declares_the_triage_subscription():
    config = EventGridConfig.load(REPO / "infra" / "entities" / "eventgrid.json")
    topic = config.topic("triage-helpdesk")
    assert topic is not None and topic.input_schema == "CloudEventSchemaV1_0"
    (subscription,) = topic.subscriptions
    assert subscription.function_name == "triage_ticket_received"
    assert set(subscription.filter.included_event_types) == {
        CREATED, UPDATED, "com.helpdesk.ticket.commented"}
    assert (subscription.retry.max_delivery_attempts, subscription.retry.event_ttl_minutes) == (
        30, 1440)
    assert subscription.dead_letter_container == "eventgrid-deadletter"


async def test_event_over_one_megabyte_is_refused_with_413(grid):
    with pytest.raises(HttpResponseError) as refused:
        await published(grid, "triage-helpdesk", [ticket(blob="x" * (1024 * 1024 + 1))])
    assert refused.value.status_code == 413


async def test_function_destination_without_a_host_is_refused_at_start(dead_letter_container):
    with pytest.raises(ValueError, match="no Functions host is attached"):
        await LocalEventGrid(grid_config(dead_letter_container)).start()
