"""Event Grid retries on an injected clock: the subscription's retry policy (max attempts,
event TTL) holds, and pending deliveries survive a restart with a data directory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid.aio import EventGridPublisherClient

from devstack.eventgrid import EventGridConfig, LocalEventGrid
from devstack.eventgrid.config import DEV_TOPIC_KEY
from devstack.eventgrid.pending import FILE_NAME
from tests.devstack.manual_clock import START, ManualClock, until
from tests.integration.support import RecordingEndpoint

TOPIC = "orders"
SUBSCRIPTION = "audit"


def config(webhook: str, *, max_attempts: int = 30, ttl_minutes: int = 1440) -> EventGridConfig:
    return EventGridConfig.parse({"UserConfig": {"Topics": [{
        "Name": TOPIC, "InputSchema": "CloudEventSchemaV1_0", "Subscriptions": [{
            "Name": SUBSCRIPTION,
            "Destination": {"EndpointType": "WebHook", "EndpointUrl": webhook},
            "RetryPolicy": {"MaxDeliveryAttempts": max_attempts,
                            "EventTimeToLiveInMinutes": ttl_minutes}}]}]}})


async def publish(grid: LocalEventGrid, event_id: str) -> None:
    async with EventGridPublisherClient(grid.topic_endpoint(TOPIC),
                                        AzureKeyCredential(DEV_TOPIC_KEY)) as client:
        await client.send([CloudEvent(source="/shop", type="order.placed", data={"n": 1},
                                      id=event_id)])


def delivery_counts(endpoint: RecordingEndpoint) -> list[str]:
    return [headers.get("aeg-delivery-count", "") for headers, _ in endpoint.received]


async def test_max_delivery_attempts_is_honoured_on_the_retry_schedule():
    clock = ManualClock()
    with RecordingEndpoint(503) as endpoint:
        url = f"http://127.0.0.1:{endpoint.port}/hook"
        async with LocalEventGrid(config(url, max_attempts=4), clock=clock) as grid:
            await publish(grid, "e-1")
            stats = grid.delivery(TOPIC, SUBSCRIPTION).stats
            await until(lambda: stats.dropped, "giving up", clock)
    assert delivery_counts(endpoint) == ["0", "1", "2", "3"]
    assert clock.slept == [10, 30, 60]
    assert stats.reasons == {"e-1": "MaxDeliveryAttemptsExceeded"}


async def test_event_time_to_live_ends_the_retries():
    clock = ManualClock()
    with RecordingEndpoint(503) as endpoint:
        url = f"http://127.0.0.1:{endpoint.port}/hook"
        async with LocalEventGrid(config(url, ttl_minutes=1), clock=clock) as grid:
            await publish(grid, "e-2")
            stats = grid.delivery(TOPIC, SUBSCRIPTION).stats
            await until(lambda: stats.dropped, "giving up", clock)
    # attempts at 0 s, 10 s and 40 s; the next one (100 s) would be past the 60 s TTL
    assert delivery_counts(endpoint) == ["0", "1", "2"]
    assert stats.reasons == {"e-2": "TimeToLiveExceeded"}


async def test_a_pending_retry_survives_a_restart_with_a_data_directory(tmp_path: Path):
    with RecordingEndpoint(503) as endpoint:
        url = f"http://127.0.0.1:{endpoint.port}/hook"
        first_clock = ManualClock()
        async with LocalEventGrid(config(url), data_dir=tmp_path, clock=first_clock) as grid:
            await publish(grid, "e-3")
            await until(lambda: first_clock.sleepers, "the first retry being scheduled")
        (saved,) = json.loads((tmp_path / FILE_NAME).read_text())[f"{TOPIC}/{SUBSCRIPTION}"]
        assert (saved["event"]["id"], saved["attempts"]) == ("e-3", 1)

        endpoint.status = 200
        second_clock = ManualClock(START + timedelta(seconds=3))
        async with LocalEventGrid(config(url), data_dir=tmp_path, clock=second_clock) as grid:
            stats = grid.delivery(TOPIC, SUBSCRIPTION).stats
            await until(lambda: stats.delivered, "the resumed delivery", second_clock)
    assert second_clock.slept == [7]  # what was left of the 10 s wait
    assert delivery_counts(endpoint) == ["0", "1"]
    assert {json.loads(body)["id"] for _, body in endpoint.received} == {"e-3"}
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {}


async def test_an_event_whose_ttl_ran_out_while_down_is_given_up_without_an_attempt(
        tmp_path: Path):
    with RecordingEndpoint(503) as endpoint:
        url = f"http://127.0.0.1:{endpoint.port}/hook"
        first_clock = ManualClock()
        async with LocalEventGrid(config(url, ttl_minutes=5), data_dir=tmp_path,
                                  clock=first_clock) as grid:
            await publish(grid, "e-4")
            await until(lambda: first_clock.sleepers, "the first retry being scheduled")
        later = ManualClock(START + timedelta(minutes=6))
        async with LocalEventGrid(config(url, ttl_minutes=5), data_dir=tmp_path,
                                  clock=later) as grid:
            stats = grid.delivery(TOPIC, SUBSCRIPTION).stats
            await until(lambda: stats.dropped, "giving up")
    assert delivery_counts(endpoint) == ["0"]
    assert stats.reasons == {"e-4": "TimeToLiveExceeded"}


def test_an_unknown_event_grid_config_field_is_a_warning_with_its_path(caplog):
    document = {"UserConfig": {"Topics": [{
        "Name": "t", "Subscriptions": [{
            "Name": "s", "Destination": {"EndpointType": "WebHook", "EndpointUrl": "http://x"},
            "RetryPolicy": {"MaxDeliveryAttempts": 3, "MaxRetries": 9},
            "EventDeliverySchema": "CloudEventSchemaV1_0"}]}]}}

    loaded = EventGridConfig.parse(document, source="grid.json")

    subscription = "UserConfig.Topics[0].Subscriptions[0]"
    assert loaded.warnings == (
        f"grid.json: {subscription}.RetryPolicy.MaxRetries: unknown field, ignored",
        f"grid.json: {subscription}.EventDeliverySchema: unknown field, ignored",
    )
    assert all(w in caplog.text for w in loaded.warnings)


def test_the_apps_event_grid_config_has_no_ignored_field():
    app_config = Path(__file__).resolve().parents[2] / "infra" / "entities" / "eventgrid.json"
    assert EventGridConfig.load(app_config).warnings == ()
