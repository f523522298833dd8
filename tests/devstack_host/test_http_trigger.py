"""HTTP triggers: routes, methods, route prefix and auth levels, on a real aiohttp server."""

from __future__ import annotations

import json

import aiohttp
from azure.data.tables.aio import TableServiceClient

from devstack.host import FunctionsHost
from tests.devstack_host.conftest import FUNCTION_KEY, MASTER_KEY, SAMPLE_APP


async def test_anonymous_route_binds_route_parameters_and_app_settings(start_host):
    host = await start_host("hello")
    async with aiohttp.ClientSession() as http, http.get(f"{host.base_url}/api/hello/ada") as r:
        assert r.status == 200
        assert await r.text() == "Hello, ada"


async def test_function_level_route_rejects_a_request_without_a_key(start_host):
    host = await start_host("order")
    async with aiohttp.ClientSession() as http, http.get(f"{host.base_url}/api/orders/7") as r:
        assert r.status == 401


async def test_function_key_in_code_query_parameter_is_accepted(start_host):
    host = await start_host("order")
    url = f"{host.base_url}/api/orders/7?code={FUNCTION_KEY}&page=2"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 200
        assert await r.json() == {"order_id": 7, "method": "GET", "body": "", "page": "2"}


async def test_function_key_in_header_is_accepted_and_post_body_reaches_the_function(start_host):
    host = await start_host("order")
    async with aiohttp.ClientSession() as http, http.post(
            f"{host.base_url}/api/orders/7", data=b"two lattes",
            headers={"x-functions-key": FUNCTION_KEY}) as r:
        assert r.status == 201
        assert (await r.json())["body"] == "two lattes"


async def test_route_constraint_rejects_a_parameter_of_the_wrong_kind(start_host):
    host = await start_host("order")
    url = f"{host.base_url}/api/orders/seven?code={FUNCTION_KEY}"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 404


async def test_method_not_registered_for_the_route_is_refused(start_host):
    host = await start_host("hello")
    async with aiohttp.ClientSession() as http, http.delete(
            f"{host.base_url}/api/hello/ada") as r:
        assert r.status == 405


async def test_admin_level_refuses_the_function_key_and_accepts_the_master_key(start_host):
    host = await start_host("admin_only")
    url = f"{host.base_url}/api/admin-only"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"x-functions-key": FUNCTION_KEY}) as r:
            assert r.status == 401
        async with http.get(url, headers={"x-functions-key": MASTER_KEY}) as r:
            assert r.status == 200
            assert await r.text() == "for admins"


async def test_function_that_raises_answers_500_and_is_logged_as_failed(start_host, caplog):
    host = await start_host("broken")
    async with aiohttp.ClientSession() as http, http.get(f"{host.base_url}/api/broken") as r:
        assert r.status == 500
    assert host.invoker.records[-1].succeeded is False
    assert any("Executed 'Functions.broken' (Failed, Id=" in m for m in caplog.messages)


async def test_each_invocation_logs_one_executed_line_with_id_and_duration(start_host, caplog):
    caplog.set_level("INFO", logger="devstack.host")
    host = await start_host("hello")
    async with aiohttp.ClientSession() as http, http.get(f"{host.base_url}/api/hello/bo") as r:
        assert r.status == 200
    record = host.invoker.records[-1]
    executed = [m for m in caplog.messages if m.startswith("Executed 'Functions.hello'")]
    assert executed == [f"Executed 'Functions.hello' (Succeeded, Id={record.invocation_id}, "
                        f"Duration={int(record.duration_ms)}ms)"]


async def test_route_prefix_comes_from_host_json(tmp_path, azurite):
    (tmp_path / "function_app.py").write_text((SAMPLE_APP / "function_app.py").read_text())
    (tmp_path / "local.settings.json").write_text(
        (SAMPLE_APP / "local.settings.json").read_text())
    (tmp_path / "host.json").write_text(json.dumps(
        {"version": "2.0", "extensions": {"http": {"routePrefix": "edge/v1"}}}))
    async with FunctionsHost(tmp_path, functions=["hello"]) as host, \
            aiohttp.ClientSession() as http:
        async with http.get(f"{host.base_url}/edge/v1/hello/ada") as r:
            assert r.status == 200
        async with http.get(f"{host.base_url}/api/hello/ada") as r:
            assert r.status == 404


async def test_invocation_past_function_timeout_fails(tmp_path):
    (tmp_path / "function_app.py").write_text((SAMPLE_APP / "function_app.py").read_text())
    (tmp_path / "local.settings.json").write_text(
        (SAMPLE_APP / "local.settings.json").read_text())
    (tmp_path / "host.json").write_text(json.dumps(
        {"version": "2.0", "functionTimeout": "00:00:00.2"}))
    async with FunctionsHost(tmp_path, functions=["slow"]) as host, \
            aiohttp.ClientSession() as http:
        async with http.get(f"{host.base_url}/api/slow?seconds=0") as r:
            assert r.status == 200
        async with http.get(f"{host.base_url}/api/slow?seconds=30") as r:
            assert r.status == 500
    assert "Timeout value of 0.2s exceeded" in (host.invoker.records[-1].error or "")


async def test_table_output_binding_writes_the_entity(start_host, azurite):
    host = await start_host("record_visit")
    async with aiohttp.ClientSession() as http, http.post(
            f"{host.base_url}/api/visits/ada", data=b"visit-1") as r:
        assert r.status == 202
    async with TableServiceClient.from_connection_string(azurite.connection_string) as tables:
        entity = await tables.get_table_client("visits").get_entity("ada", "visit-1")
    assert (entity["PartitionKey"], entity["RowKey"]) == ("ada", "visit-1")
