"""`GET /api/ops/deadletters`: the ops Blueprint in a function app run by devstack's host,
over real HTTP, against devstack's Service Bus."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from azure.servicebus import ServiceBusMessage

from devstack.host import FunctionsHost
from tests.integration.ops.bus import dead_letter_one, send

MASTER_KEY = "ops-test-master-key"
FUNCTION_KEY = "ops-test-function-key"
FUNCTION_APP = """
import azure.functions as func

from agents.ops.blueprint import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)
"""


@pytest.fixture
async def host(tmp_path, values, entities_dir):
    (tmp_path / "function_app.py").write_text(FUNCTION_APP)
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0"}))
    async with FunctionsHost(tmp_path, settings={
            **values, "OPS_ENTITIES_DIR": str(entities_dir),
            "DEVSTACK_HOST_MASTER_KEY": MASTER_KEY,
            "DEVSTACK_HOST_FUNCTION_KEY": FUNCTION_KEY}) as running:
        yield running


async def test_lists_dead_letters_as_json_for_the_master_key(host, bus):
    await asyncio.to_thread(send, bus, "orders-payments", ServiceBusMessage(
        b"{}", message_id="charge-3", subject="orders.payment.charge"))
    sequence, _ = await asyncio.to_thread(dead_letter_one, bus, "orders-payments",
                                          reason="MaxDeliveryCountExceeded")
    async with aiohttp.ClientSession() as http, http.get(
            f"{host.base_url}/api/ops/deadletters", params={"entity": "orders-payments"},
            headers={"x-functions-key": MASTER_KEY}) as response:
        assert response.status == 200
        [row] = await response.json()
    assert {k: row[k] for k in ("entity", "sequenceNumber", "messageId", "deadLetterReason")} \
        == {"entity": "orders-payments", "sequenceNumber": sequence, "messageId": "charge-3",
            "deadLetterReason": "MaxDeliveryCountExceeded"}


async def test_refuses_a_caller_without_a_key(host):
    async with aiohttp.ClientSession() as http, http.get(
            f"{host.base_url}/api/ops/deadletters") as response:
        assert response.status == 401


async def test_refuses_a_function_key_the_admin_level_needs_the_master_key(host):
    async with aiohttp.ClientSession() as http, http.get(
            f"{host.base_url}/api/ops/deadletters",
            headers={"x-functions-key": FUNCTION_KEY}) as response:
        assert response.status == 401


async def test_an_unknown_entity_is_a_bad_request_naming_it(host):
    async with aiohttp.ClientSession() as http, http.get(
            f"{host.base_url}/api/ops/deadletters", params={"entity": "nope"},
            headers={"x-functions-key": MASTER_KEY}) as response:
        assert response.status == 400
        assert "unknown Service Bus entity 'nope'" in (await response.json())["error"]
