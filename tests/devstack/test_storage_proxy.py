"""devstack's storage fault proxy in front of Azurite, observed with the official
azure-data-tables and azure-storage-blob SDKs; what was really written is read from Azurite
directly, around the proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import aiohttp
import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient

from devstack.azurite import Azurite, free_port
from devstack.storageproxy import StorageFault, StorageProxy, resources_of

CUT = (ServiceResponseError, ServiceRequestError)  # how the SDK sees a connection cut


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[StorageProxy]:
    with StorageProxy(azurite, seed=1, admin_port=0) as running:
        yield running


def table_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def through(proxy: StorageProxy, table: str, retries: int = 0) -> TableClient:
    service = TableServiceClient.from_connection_string(
        proxy.connection_string, retry_total=retries, retry_backoff_factor=0.01)
    return service.get_table_client(table)


def direct(azurite: Azurite, table: str) -> TableClient:
    client = TableServiceClient.from_connection_string(azurite.connection_string)
    return client.get_table_client(table)


def rows(azurite: Azurite, table: str) -> list[str]:
    return sorted(str(entity["RowKey"]) for entity in direct(azurite, table).list_entities())


def test_requests_pass_through_untouched(proxy: StorageProxy, azurite: Azurite) -> None:
    name = table_name()
    client = through(proxy, name)
    client.create_table()
    client.create_entity({"PartitionKey": "p", "RowKey": "r1", "n": 1})
    client.upsert_entity({"PartitionKey": "p", "RowKey": "r1", "n": 2})
    assert client.get_entity("p", "r1")["n"] == 2
    assert rows(azurite, name) == ["r1"]


def test_keys_that_need_percent_encoding_keep_their_signature(proxy: StorageProxy,
                                                              azurite: Azurite) -> None:
    name = table_name()
    client = through(proxy, name)
    client.create_table()
    client.upsert_entity({"PartitionKey": "payments", "RowKey": "card:tok 'a'+b"},
                         mode=UpdateMode.REPLACE)
    assert client.get_entity("payments", "card:tok 'a'+b")["RowKey"] == "card:tok 'a'+b"
    client.delete_entity("payments", "card:tok 'a'+b")
    assert rows(azurite, name) == []


def test_unavailable_answers_503_and_writes_nothing(proxy: StorageProxy,
                                                    azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.unavailable(service="table", resource=name)
    with pytest.raises(HttpResponseError) as refused:
        through(proxy, name).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert refused.value.status_code == 503
    assert rows(azurite, name) == []
    assert proxy.faults.injected() == {"unavailable": 1}


def test_the_sdk_retries_through_a_503_and_writes_once(proxy: StorageProxy,
                                                       azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.unavailable(resource=name, times=2)
    through(proxy, name, retries=3).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert rows(azurite, name) == ["r1"]
    assert proxy.faults.injected() == {"unavailable": 2}


def test_a_timed_out_request_is_cut_off_and_never_applied(proxy: StorageProxy,
                                                          azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.timeout(0.2, resource=name, times=1)
    with pytest.raises(CUT):
        through(proxy, name).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert rows(azurite, name) == []


def test_drop_response_applies_the_write_and_loses_the_answer(proxy: StorageProxy,
                                                              azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.drop_response(resource=name, times=1)
    with pytest.raises(CUT):
        through(proxy, name).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert rows(azurite, name) == ["r1"]


def test_an_insert_retried_after_a_dropped_answer_finds_its_own_write(
        proxy: StorageProxy, azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.drop_response(resource=name, times=1)
    client = through(proxy, name, retries=3)  # the SDK does not retry a POST it sent
    with pytest.raises(CUT):
        client.create_entity({"PartitionKey": "p", "RowKey": "r1"})
    with pytest.raises(ResourceExistsError):
        client.create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert rows(azurite, name) == ["r1"]


def test_drop_response_leaves_reads_alone(proxy: StorageProxy, azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    direct(azurite, name).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    proxy.faults.drop_response(resource=name)
    assert through(proxy, name).get_entity("p", "r1")["RowKey"] == "r1"
    assert proxy.faults.injected() == {}


def test_a_fault_on_one_table_spares_the_others(proxy: StorageProxy, azurite: Azurite) -> None:
    hit, spared = table_name(), table_name()
    for name in (hit, spared):
        direct(azurite, name).create_table()
    proxy.faults.unavailable(resource=hit)
    through(proxy, spared).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    with pytest.raises(HttpResponseError):
        through(proxy, hit).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert (rows(azurite, spared), rows(azurite, hit)) == (["r1"], [])


def test_a_transaction_is_matched_by_the_table_it_writes(proxy: StorageProxy,
                                                         azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.unavailable(resource=name)
    with pytest.raises(HttpResponseError):
        through(proxy, name).submit_transaction([
            ("create", {"PartitionKey": "p", "RowKey": "r1"}),
            ("create", {"PartitionKey": "p", "RowKey": "r2"})])
    assert rows(azurite, name) == []


def test_a_disarmed_fault_stops(proxy: StorageProxy, azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    fault = proxy.faults.unavailable(resource=name)
    proxy.faults.disarm(fault)
    through(proxy, name).create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert rows(azurite, name) == ["r1"]


def test_batch_bodies_name_their_table() -> None:
    body = (b"--changeset\r\nPUT http://127.0.0.1:1/devstoreaccount1/orders(PartitionKey="
            b"'a',RowKey='b') HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            b"--changeset\r\nPOST http://127.0.0.1:1/devstoreaccount1/ledger HTTP/1.1\r\n")
    assert resources_of("table", "/devstoreaccount1/$batch", body) == {"orders", "ledger"}
    assert resources_of("table", "/devstoreaccount1/orders()", b"") == {"orders"}
    assert resources_of("blob", "/devstoreaccount1/letters/a/b.json", b"") == {"letters"}


def test_a_share_of_requests_is_hit_the_same_way_for_the_same_seed(azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()

    def outcomes(seed: int) -> list[bool]:
        with StorageProxy(azurite, seed=seed) as proxy:
            proxy.faults.unavailable(share=0.5, resource=name)
            client = through(proxy, name)
            seen = []
            for _ in range(30):
                try:
                    client.list_entities().by_page().next()
                    seen.append(True)
                except HttpResponseError:
                    seen.append(False)
            return seen

    first = outcomes(42)
    assert first == outcomes(42)
    assert 0 < first.count(False) < len(first)


def test_latency_delays_but_answers(proxy: StorageProxy, azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    proxy.faults.latency(0.05, resource=name, times=2)
    client = through(proxy, name)
    client.create_entity({"PartitionKey": "p", "RowKey": "r1"})
    assert client.get_entity("p", "r1")["RowKey"] == "r1"
    assert proxy.faults.injected() == {"latency": 2}


def test_blob_requests_are_proxied_and_faulted(proxy: StorageProxy, azurite: Azurite) -> None:
    container = f"c{uuid.uuid4().hex[:12]}"
    blobs = BlobServiceClient.from_connection_string(proxy.connection_string, retry_total=0)
    blobs.create_container(container).upload_blob("a.txt", b"kept")
    proxy.faults.unavailable(service="blob", resource=container, times=1)
    with pytest.raises(HttpResponseError):
        blobs.get_blob_client(container, "a.txt").download_blob()
    assert blobs.get_blob_client(container, "a.txt").download_blob().readall() == b"kept"


async def test_the_http_fault_api_arms_and_reports(proxy: StorageProxy,
                                                   azurite: Azurite) -> None:
    name = table_name()
    direct(azurite, name).create_table()
    async with aiohttp.ClientSession(str(proxy.admin_url)) as admin:
        async with admin.post("/faults/unavailable",
                              params={"service": "table", "resource": name, "times": "1"}) as r:
            assert r.status == 200
        async with admin.post("/faults/nonsense") as r:
            assert r.status == 404
        async with admin.post("/faults/unavailable", params={"share": "2"}) as r:
            assert r.status == 400
        with pytest.raises(HttpResponseError):
            through(proxy, name).create_entity({"PartitionKey": "p", "RowKey": "r1"})
        async with admin.get("/faults") as r:
            assert (await r.json())["injected"] == {"unavailable": 1}
        async with admin.post("/faults/clear") as r:
            assert r.status == 200


def test_an_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="no storage fault"):
        StorageFault("half-apply")


def test_an_upstream_that_does_not_answer_is_a_502() -> None:
    gone = Azurite(ports={"table": free_port()})  # nothing listens there
    with StorageProxy(gone) as proxy, pytest.raises(HttpResponseError) as refused:
        through(proxy, table_name()).create_table()
    assert refused.value.status_code == 502
    assert "Azurite did not answer" in str(refused.value)
