"""`make demo`, fraud part: the local cloud (Azurite, devstack's Service Bus and Event Hubs,
local model and Functions host running function_app.py with the orders agent, its simulated
services and the fraud agent), then the fraud stories, each with checks a user can read.
Exits 1 if any check fails.

Stories: a velocity burst on one card raises an alert and compensates the order it tripped
(the gateway is slowed so the alert lands while the charge is still the saga's step); a poison
event is parked on fraud-poison-events and its partition keeps flowing; during an LLM outage
the verdict is rules-only at once (the breaker counts the failure), and after recovery the
model explains again.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402
from azure.eventhub import EventData  # noqa: E402
from azure.eventhub.aio import EventHubProducerClient  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402

from agents.backbone.envelope import Envelope  # noqa: E402
from agents.backbone.partitions import hashed  # noqa: E402
from agents.backbone.tables import table_key  # noqa: E402
from agents.backbone.wire import encode_body  # noqa: E402
from agents.contracts import orders  # noqa: E402
from agents.fraud import bootstrap, entities  # noqa: E402
from agents.fraud.handlers import CARD_PREFIX  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from devstack.host import FunctionsHost  # noqa: E402
from devstack.llm import LocalModelServer  # noqa: E402
from devstack.server import DevStack  # noqa: E402
from scripts.demo import (  # noqa: E402
    FUNCTION_KEY,
    STEP_TIMEOUT_SECONDS,
    TERMINAL,
    Check,
    app_settings,
    console,
)

BURST = 6  # one more than FRAUD_VELOCITY_COUNT's default
SLOW_CHARGE_SECONDS = 3  # within the step deadline: the charge is still in flight at the alert
@dataclass
class FraudCloud:
    host: FunctionsHost
    devstack: DevStack
    model: LocalModelServer
    http: aiohttp.ClientSession
    storage: str

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(
                method, f"{self.host.base_url}/api/{path}", json=body,
                headers={"x-functions-key": FUNCTION_KEY, **(headers or {})}) as response:
            return response.status, await response.json()

    async def burst(self, card: str) -> list[dict[str, Any]]:
        """BURST orders on one card with a slowed gateway; their final states."""
        status, answer = await self.call("POST", "simulators/payments/mode", {
            "mode": "slow", "scope": f"card:{card}", "slowSeconds": SLOW_CHARGE_SECONDS})
        assert status == 200, answer
        body = {"customerId": "c-fraud-demo", "card": card,
                "items": [{"sku": "sku-1", "quantity": 1, "unitPriceCents": 1500}]}
        placed = [await self.call("POST", "orders", body, {"Idempotency-Key": str(uuid.uuid4())})
                  for _ in range(BURST)]
        return [await self.settled(order["orderId"]) for _, order in placed]

    async def settled(self, order_id: str, within: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            _, order = await self.call("GET", f"orders/{order_id}")
            if order["status"] in TERMINAL or time.monotonic() > deadline:
                return dict(order)
            await asyncio.sleep(0.5)

    def rows(self, prefix: str) -> list[dict[str, Any]]:
        table = TableServiceClient.from_connection_string(self.storage).get_table_client(
            bootstrap.STATE_TABLE)
        return [dict(row) for row in table.list_entities() if row["RowKey"].startswith(prefix)]

    def answers(self) -> list[dict[str, Any]]:
        return self.rows("answer|")


@asynccontextmanager
async def fraud_cloud() -> AsyncIterator[FraudCloud]:
    saved = dict(os.environ)
    with ExitStack() as servers:
        azurite = servers.enter_context(Azurite())
        devstack = servers.enter_context(DevStack(
            [ROOT / "infra/entities/servicebus.json", ROOT / "infra/entities/eventhubs.json"],
            port=0))
        model = servers.enter_context(LocalModelServer(port=0))
        settings = {**app_settings(azurite.connection_string, devstack),
                    "LLM_PROVIDER": "local", "AZURE_OPENAI_ENDPOINT": model.base_url,
                    "AZURE_OPENAI_DEPLOYMENT": "chat", "LLM_TIMEOUT_SECONDS": "2",
                    "LLM_MAX_RETRIES": "0", "LLM_BREAKER_MINIMUM_THROUGHPUT": "2",
                    "LLM_BREAKER_BREAK_SECONDS": "2"}
        host = FunctionsHost(ROOT, settings=settings)
        await host.start()
        try:
            async with aiohttp.ClientSession() as http:
                yield FraudCloud(host, devstack, model, http, azurite.connection_string)
        finally:
            await host.stop()
            os.environ.clear()
            os.environ.update(saved)


def fraud_checks(orders_: list[dict[str, Any]], label: str) -> list[Check]:
    compensated = [o for o in orders_ if o["status"] == "compensated"]
    completed = [o for o in orders_ if o["status"] == "completed"]
    reason = compensated[0]["failure"] if compensated else None
    return [
        Check(f"{label}: the payment that tripped velocity compensated its order",
              len(compensated) == 1 and "velocity" in str(reason), str(reason)),
        Check(f"{label}: the other orders of the burst completed",
              len(completed) == BURST - 1, f"{len(completed)} completed"),
    ]


async def velocity_burst(cloud: FraudCloud) -> list[Check]:
    return fraud_checks(await cloud.burst(f"tok-burst-{uuid.uuid4().hex[:6]}"), "burst")


async def poison_parked(cloud: FraudCloud) -> list[Check]:
    card = f"tok-poison-{uuid.uuid4().hex[:6]}"
    async with EventHubProducerClient.from_connection_string(
            cloud.devstack.connection_string, eventhub_name=entities.PAYMENTS_HUB) as producer:
        batch = await producer.create_batch(partition_key=hashed(card))
        batch.add(EventData(b'{"specversion": "1.0", "type": "orders.payment.charged"'))
        payment = Envelope.new(orders.PAYMENT_CHARGED, {
            "orderId": f"{card}-o1", "chargeId": "c1", "customerId": "cu", "card": card,
            "amountCents": 1200}, source="/demo", partitionkey=card, time=datetime.now(UTC))
        batch.add(EventData(encode_body(payment)))
        await producer.send_batch(batch)
    parked: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    async with ServiceBusClient.from_connection_string(cloud.devstack.connection_string) as bus, \
            bus.get_queue_receiver(entities.POISON_QUEUE) as receiver:
        while not parked and time.monotonic() < deadline:
            for message in await receiver.peek_messages(max_message_count=20):
                event = json.loads(b"".join(message.body))
                if event["data"]["body"].startswith('{"specversion"'):
                    parked.append(event["data"])
            await asyncio.sleep(0.5)
    windows = cloud.rows(CARD_PREFIX + table_key(card))
    return [Check("the malformed event is parked with its position and reason",
                  len(parked) == 1 and parked[0]["reason"] == "InvalidEncoding",
                  f"partition {parked[0]['partitionId']} seq {parked[0]['sequenceNumber']}: "
                  f"{parked[0]['reason']}" if parked else "nothing parked"),
            Check("the next payment on its partition was scored", len(windows) == 1,
                  f"{len(windows)} card window(s)")]


async def llm_outage(cloud: FraudCloud) -> list[Check]:
    before = {a["RowKey"] for a in cloud.answers()}
    cloud.model.faults.outage(3600, deployment="chat")
    during = await cloud.burst(f"tok-outage-{uuid.uuid4().hex[:6]}")
    rules_only = [a for a in cloud.answers()
                  if a["RowKey"] not in before and a["Source"] == "fallback"]
    cloud.model.faults.clear()
    await asyncio.sleep(3)  # a breaker opened by the outage ends its break (2 s) by then
    seen = {a["RowKey"] for a in cloud.answers()}
    after = await cloud.burst(f"tok-recovered-{uuid.uuid4().hex[:6]}")
    explained = [a for a in cloud.answers() if a["RowKey"] not in seen and a["Source"] == "model"]
    return [*fraud_checks(during, "outage"),
            Check("during the outage the verdict is rules-only", len(rules_only) == 1,
                  json.loads(rules_only[0]["Answer"])["rationale"] if rules_only else "-"),
            *fraud_checks(after, "recovered"),
            Check("after recovery the model explains again", len(explained) == 1,
                  json.loads(explained[0]["Answer"])["rationale"][:80] if explained else "-")]


STORIES = [("A velocity burst raises an alert and compensates its order", velocity_burst),
           ("A poison event is parked and the partition keeps flowing", poison_parked),
           ("LLM outage -> rules-only verdicts -> recovery", llm_outage)]


async def run() -> int:
    failed = 0
    started = time.monotonic()
    async with fraud_cloud() as cloud:
        for title, story in STORIES:
            console.rule(f"[bold]{title}")
            for check in await story(cloud):
                mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
                console.print(f"  {mark} {check.name}: {check.detail}", highlight=False)
                failed += not check.passed
    seconds = time.monotonic() - started
    console.print(f"[bold green]fraud: every check passed ({seconds:.0f}s)[/]" if not failed
                  else f"[bold red]fraud: {failed} check(s) failed[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    assert SLOW_CHARGE_SECONDS < STEP_TIMEOUT_SECONDS
    sys.exit(asyncio.run(run()))
