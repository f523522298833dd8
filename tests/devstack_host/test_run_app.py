"""Running an app as `python -m devstack app DIR` does: host plus a local Event Grid."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid.aio import EventGridPublisherClient
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from devstack.azurite import free_port
from devstack.eventgrid.config import DEV_TOPIC_KEY
from devstack.host.cli import serve_app
from devstack.host.index import index_functions, load_app
from tests.devstack_host.conftest import SAMPLE_APP
from tests.devstack_host.helpers import eventually, read_json_blobs

REPO = Path(__file__).resolve().parents[2]
# Disabled through the app setting Azure uses, so no Service Bus or Event Hubs is needed.
NOT_UNDER_TEST = ("sb_order_received", "sb_session_received", "sb_self_settled",
                  "eh_payments_received", "eh_alert_received", "flaky_tick", "backoff_tick",
                  "sb_audit_received", "sb_slow_received", "sb_batch_received",
                  "sb_session_held")
# What local.settings.json holds for a local Service Bus on the default port.
EMULATOR_CONNECTION = ("Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
                       "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;")


async def test_serve_app_wires_the_event_grid_config_to_the_hosts_webhook(azurite):
    grid_port = free_port()
    stop = asyncio.Event()
    serving = asyncio.create_task(serve_app(
        SAMPLE_APP, settings={"AzureWebJobsStorage": azurite.connection_string,
                              **{f"AzureWebJobs.{name}.Disabled": "true"
                                 for name in NOT_UNDER_TEST}},
        event_grid_config=REPO / "infra" / "entities" / "eventgrid.json",
        event_grid_port=grid_port, stop=stop))
    try:
        endpoint = f"http://127.0.0.1:{grid_port}/topics/triage-helpdesk/api/events"
        event = CloudEvent(source="/helpdesk", type="com.helpdesk.ticket.created",
                           subject=f"/tickets/{uuid.uuid4()}", data={"title": "VPN down"})

        async def publish() -> bool:
            try:
                async with EventGridPublisherClient(endpoint,
                                                    AzureKeyCredential(DEV_TOPIC_KEY)) as c:
                    await c.send([event])
                return True
            except Exception:
                return False  # not listening yet

        await eventually(publish)
        seen = await eventually(lambda: _ticket(azurite.connection_string, event.id))
        assert seen["ticket"] == {"title": "VPN down"}
    finally:
        stop.set()
        await serving


async def _ticket(storage: str, event_id: str) -> dict[str, Any] | None:
    for seen in await read_json_blobs(storage, "observations", "tickets/"):
        if seen["id"] == event_id:
            return dict(seen)
    return None


async def test_cli_app_command_serves_http_until_interrupted(azurite, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for name in ("function_app.py", "host.json"):
        (app_dir / name).write_text((SAMPLE_APP / name).read_text())
    port = free_port()
    (app_dir / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False, "Host": {"LocalHttpPort": port},
        "Values": {"SAMPLE_GREETING": "Hej", "TICK_SCHEDULE": "0 0 0 1 1 *",
                   "SAMPLE_QUEUE": "sample-orders",
                   "AzureWebJobsStorage": azurite.connection_string,
                   **{f"AzureWebJobs.{name}.Disabled": "true" for name in NOT_UNDER_TEST}}}))
    process = subprocess.Popen([sys.executable, "-m", "devstack", "app", str(app_dir)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        async def greeting() -> str | None:
            try:
                async with aiohttp.ClientSession() as http, http.get(
                        f"http://127.0.0.1:{port}/api/hello/ada") as response:
                    return await response.text()
            except aiohttp.ClientError:
                return None

        assert await eventually(greeting) == "Hej, ada"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert b"Executed 'Functions.hello' (Succeeded, Id=" in output


async def test_up_with_app_points_emulator_connection_settings_at_its_port(azurite, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for name in ("function_app.py", "host.json"):
        (app_dir / name).write_text((SAMPLE_APP / name).read_text())
    only = {"sb_order_received"}
    (app_dir / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False, "Host": {"LocalHttpPort": free_port()},
        "Values": {"SAMPLE_QUEUE": "sample-orders", "TICK_SCHEDULE": "0 0 0 1 1 *",
                   "SAMPLE_SERVICEBUS": EMULATOR_CONNECTION,
                   "AzureWebJobsStorage": azurite.connection_string,
                   **{f"AzureWebJobs.{name}.Disabled": "true"
                      for name in sample_function_names() - only}}}))
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--port", "0",
         "--config", str(SAMPLE_APP / "devstack-entities.json"), "--app", str(app_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        connection = await asyncio.to_thread(_printed_connection_string, process.stdout)
        async with ServiceBusClient.from_connection_string(connection) as client:
            async with client.get_queue_sender("sample-orders") as sender:
                await sender.send_messages(ServiceBusMessage("one espresso"))
            async with client.get_queue_receiver("sample-replies",
                                                 max_wait_time=30) as receiver:
                replies = await receiver.receive_messages(max_message_count=1,
                                                          max_wait_time=30)
                for reply in replies:
                    await receiver.complete_message(reply)
        assert [str(r) for r in replies] == ["handled:one espresso"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output.decode()


def sample_function_names() -> set[str]:
    return {spec.name for spec in index_functions(load_app(SAMPLE_APP))}


def _printed_connection_string(stdout) -> str:
    for line in stdout:
        if line.startswith(b"Endpoint=sb://"):
            return str(line.decode()).strip()
    raise AssertionError("devstack up printed no connection string")


async def test_cli_app_command_logs_no_uamqp_lines_for_an_sdk_type_trigger(
        azurite, servicebus, tmp_path):
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    for name in ("function_app.py", "host.json"):
        (app_dir / name).write_text((SAMPLE_APP / name).read_text())
    only = {"sb_self_settled"}  # the SDK-type binding, settled through message actions
    (app_dir / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False, "Host": {"LocalHttpPort": free_port()},
        "Values": {"SAMPLE_QUEUE": "sample-orders", "TICK_SCHEDULE": "0 0 0 1 1 *",
                   "SAMPLE_SERVICEBUS": servicebus.connection_string,
                   "AzureWebJobsStorage": azurite.connection_string,
                   **{f"AzureWebJobs.{name}.Disabled": "true"
                      for name in sample_function_names() - only}}}))
    process = subprocess.Popen([sys.executable, "-m", "devstack", "app", str(app_dir)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        message_id = str(uuid.uuid4())
        async with ServiceBusClient.from_connection_string(
                servicebus.connection_string) as client, \
                client.get_queue_sender("sample-manual") as sender:
            await sender.send_messages(ServiceBusMessage("accept", message_id=message_id))

        async def handled() -> bool:
            seen = await read_json_blobs(azurite.connection_string, "observations", "manual/")
            return any(s["message_id"] == message_id for s in seen)

        await eventually(handled, timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert b"Executed 'Functions.sb_self_settled' (Succeeded, Id=" in output
    # The extension's decoder feeds uamqp bytes that start inside the delivery annotations
    # (Azure's layout: its own sample of them logs the same lines); uamqp logs that at INFO.
    assert b"azure-uamqp-c" not in output, output.decode()
