"""Retries exhausted, on the local cloud: the fraud table fails on every attempt (devstack's
storage fault proxy in front of Azurite, armed on the `fraud` table only), the host retries
the batch per the trigger's policy, the last retry parks it on `fraud-poison-events`, the
checkpoint moves past it, `agents.ops poison` lists it, and once storage is back a replay is
scored once: one alert, the high-water mark past it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient
from azure.storage.blob import ContainerClient
from typer.testing import CliRunner, Result

from agents.fraud import blueprint, bootstrap, entities
from agents.fraud.handlers import MARK_ROW
from agents.ops.cli import SKIPPED, app
from devstack.azurite import Azurite
from devstack.host.eventhubs import CHECKPOINT_CONTAINER
from devstack.server import DevStack
from devstack.storageproxy import StorageProxy
from tests.integration.fraud.support import ROOT, T0, Cloud, card, eventually, payment

ATTEMPTS = 1 + int(blueprint.MAX_RETRIES)
# The policy's own waits (1, 2, 4, 8, 16 s) plus each attempt's storage calls (the Tables
# SDK retries a 503 itself: about 5 s per attempt here), generously.
PARKED_WITHIN = 150.0


class ProxiedCloud(Cloud):
    """The fraud agent's state storage behind the fault proxy; the host's own storage
    (checkpoints, leases) goes straight to Azurite."""

    def __init__(self, devstack: DevStack, azurite: Azurite, proxy: StorageProxy) -> None:
        super().__init__(devstack, azurite)
        self.proxy = proxy

    def settings(self) -> dict[str, str]:
        return {**super().settings(), entities.STATE_STORAGE: self.proxy.connection_string}

    def parked(self) -> list[dict[str, Any]]:
        with ServiceBusClient.from_connection_string(self.devstack.connection_string) as bus, \
                bus.get_queue_receiver(entities.POISON_QUEUE) as receiver:
            return [json.loads(b"".join(m.body))["data"]
                    for m in receiver.peek_messages(max_message_count=50)]

    def checkpoint(self, partition: str) -> int:
        container = ContainerClient.from_connection_string(self.azurite.connection_string,
                                                           CHECKPOINT_CONTAINER)
        [blob] = [b for b in container.list_blobs(include=["metadata"])
                  if f"/{entities.CONSUMER_GROUP}/checkpoint/{partition}" in b.name]
        return int(blob.metadata["sequencenumber"])

    def mark(self, partition: str) -> int:
        return int(self.table.get_entity(partition, MARK_ROW)["Sequence"])

    def scoring_invocations(self) -> list[bool]:
        assert self.host is not None
        return [record.succeeded for record in self.host.invoker.records
                if record.function_name == "fraud_score_payments"]


@pytest.fixture(scope="module")
def devstack() -> Iterator[DevStack]:
    """Its own: the parking queue holds only this module's parked events."""
    with DevStack([ROOT / "infra/entities/servicebus.json",
                   ROOT / "infra/entities/eventhubs.json"], port=0) as stack:
        yield stack


@pytest.fixture
async def proxied(devstack: DevStack, azurite: Azurite) -> AsyncIterator[ProxiedCloud]:
    saved = dict(os.environ)
    with StorageProxy(azurite, seed=1) as proxy:
        cloud = ProxiedCloud(devstack, azurite, proxy)
        cloud.reset()
        await cloud.start()
        try:
            yield cloud
        finally:
            await cloud.stop()
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def ops(tmp_path: Path, devstack: DevStack, azurite: Azurite) -> Callable[..., Result]:
    """`python -m agents.ops ARGS` in-process, with a local.settings.json for this stack."""
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {
        entities.SERVICEBUS_CONNECTION: devstack.connection_string,
        entities.EVENTHUBS_CONNECTION: devstack.connection_string,
        "ORDERS_SERVICEBUS": devstack.connection_string,
        "TRIAGE_SERVICEBUS": devstack.connection_string,
        entities.STATE_STORAGE: azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string}}))

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, ["--settings", str(settings), "--entities",
                                        str(ROOT / "infra/entities"), *args])

    return run


async def test_a_batch_failing_every_retry_is_parked_then_replayed_and_scored_once(
        proxied: ProxiedCloud, ops: Callable[..., Result]) -> None:
    tok = card()
    proxied.publish(*(payment(tok, n) for n in range(5)))
    await eventually(proxied.scored(tok, 5))  # warm: the partition's state is cached
    proxied.proxy.faults.unavailable(1.0, service="table", resource=bootstrap.STATE_TABLE)
    proxied.publish(payment(tok, 5))  # the sixth trips velocity, but the table is down

    [parked] = await eventually(proxied.parked, timeout=PARKED_WITHIN)
    assert parked["reason"] == "StorageUnavailable"
    assert json.loads(parked["body"])["data"]["orderId"] == f"{tok}-o5"
    partition, sequence = parked["partitionId"], parked["sequenceNumber"]
    # The last attempt parks, then returns: the host records it as succeeded.
    retried = [False] * (ATTEMPTS - 1) + [True]
    await eventually(lambda: proxied.scoring_invocations()[-ATTEMPTS:] == retried)
    await eventually(lambda: proxied.checkpoint(partition) >= sequence)
    assert await proxied.alerts(tok) == []

    listed = ops("poison", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["partitionId"], row["eventSequenceNumber"], row["reason"]) == (
        partition, sequence, "StorageUnavailable")

    proxied.proxy.faults.clear()
    replayed = ops("poison", "replay", "--all", "--json")
    assert replayed.exit_code == 0, replayed.output
    window = await eventually(proxied.scored(tok, 6))
    assert window["count"] == 6
    [alert] = await proxied.alerts(tok)
    assert alert["data"]["orderId"] == f"{tok}-o5" and alert["data"]["reasons"] == ["velocity"]
    assert proxied.mark(partition) > sequence
    again = ops("poison", "replay", "--seq", str(row["sequenceNumber"]))
    assert again.exit_code == SKIPPED
    proxied.publish(payment(tok, 6, at=T0 + timedelta(hours=2)))
    assert (await eventually(proxied.scored(tok, 7)))["count"] == 7
