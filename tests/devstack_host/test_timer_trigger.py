"""Timer triggers: six-field NCRONTAB schedules, run_on_startup, past_due, retry policies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devstack.host.timer import HOSTS_CONTAINER, Schedule
from tests.devstack_host.helpers import eventually, read_json_blobs


def test_ncrontab_schedule_has_seconds_first():
    start = datetime(2026, 1, 1, 9, 0, 0, tzinfo=UTC)
    assert Schedule("*/5 * * * * *").next_after(start) == start + timedelta(seconds=5)
    assert Schedule("0 30 9 * * 1-5").next_after(start) == datetime(2026, 1, 1, 9, 30,
                                                                      tzinfo=UTC)


def test_timespan_schedule_fires_every_interval():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert Schedule("00:00:30").next_after(start) == start + timedelta(seconds=30)


def test_five_field_cron_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="six fields"):
        Schedule("*/5 * * * *").next_after(datetime.now(UTC))


async def test_run_on_startup_fires_once_with_past_due_false(start_host, azurite):
    prefix = f"tick-{datetime.now(UTC).timestamp()}"
    host = await start_host("tick", AzureFunctionsWebHost__hostid=prefix)
    await eventually(lambda: [r for r in host.invoker.records if r.function_name == "tick"])
    seen = await eventually(lambda: read_json_blobs(azurite.connection_string,
                                                    "observations", "tick/"))
    assert {"past_due": False} in seen


async def test_schedule_from_an_app_setting_fires_on_time(start_host):
    host = await start_host("tick", TICK_SCHEDULE="* * * * * *")
    # Start-up run plus at least two scheduled seconds.
    await eventually(lambda: sum(r.function_name == "tick" for r in host.invoker.records) >= 3)


async def test_occurrence_missed_while_host_was_down_runs_past_due_on_startup(start_host,
                                                                             azurite):
    host_id = f"missed-{datetime.now(UTC).timestamp():.0f}"
    missed = datetime.now(UTC) - timedelta(minutes=5)
    status = {"Last": (missed - timedelta(days=1)).isoformat(), "Next": missed.isoformat(),
              "LastUpdated": missed.isoformat()}
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(HOSTS_CONTAINER)
        if not await container.exists():
            await container.create_container()
        await container.upload_blob(f"timers/{host_id}/Host.Functions.tick/status",
                                    json.dumps(status), overwrite=True)
        async for blob in service.get_container_client("observations").list_blobs(
                name_starts_with="tick/"):
            await service.get_container_client("observations").delete_blob(blob.name)
    await start_host("tick", AzureFunctionsWebHost__hostid=host_id)
    seen = await eventually(lambda: read_json_blobs(azurite.connection_string,
                                                    "observations", "tick/"))
    assert seen == [{"past_due": True}]


async def test_fixed_delay_retry_policy_retries_until_the_function_succeeds(start_host):
    host = await start_host("flaky_tick")
    await eventually(lambda: any(r.succeeded for r in host.invoker.records))
    attempts = [(r.retry_count, r.succeeded) for r in host.invoker.records]
    assert attempts == [(0, False), (1, False), (2, True)]


async def test_exponential_backoff_gives_up_after_max_retry_count(start_host):
    host = await start_host("backoff_tick")
    await eventually(lambda: len(host.invoker.records) >= 3)
    attempts = [(r.retry_count, r.succeeded) for r in host.invoker.records]
    assert attempts == [(0, False), (1, False), (2, False)]
