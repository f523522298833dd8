"""`make demo`, triage part: the local cloud (Azurite, devstack's Service Bus, Event Grid,
local model and Functions host running function_app.py), then the triage stories, each with
checks a user can read. Exits 1 if any check fails.

Stories: tickets classified and routed per team (an urgent one pages), a duplicate webhook
absorbed, a forged signature refused (401), an invalid ticket recorded with its reason (and
not retried by Event Grid), an LLM outage -> manual triage -> re-classification after recovery.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from azure.core.credentials import AzureKeyCredential  # noqa: E402
from azure.eventgrid.aio import EventGridPublisherClient  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402

from agents.contracts import triage as contracts  # noqa: E402
from agents.ops import triage as ops_triage  # noqa: E402
from agents.triage import bootstrap  # noqa: E402
from devstack.azurite import Azurite, free_port  # noqa: E402
from devstack.eventgrid import EventGridConfig, LocalEventGrid  # noqa: E402
from devstack.eventgrid.config import DEV_TOPIC_KEY  # noqa: E402
from devstack.host import FunctionsHost  # noqa: E402
from devstack.llm import LocalModelServer  # noqa: E402
from devstack.server import DevStack  # noqa: E402
from scripts.demo import Check, console  # noqa: E402
from scripts.helpdesk import Delivery, signed, ticket_payload  # noqa: E402

SECRET = "triage-demo-webhook-secret"
@dataclass
class TriageCloud:
    host: FunctionsHost
    grid: LocalEventGrid
    bus: ServiceBusClient
    model: LocalModelServer
    http: aiohttp.ClientSession
    settings: dict[str, str]

    async def webhook(self, delivery: Delivery) -> tuple[int, Any]:
        async with self.http.post(f"{self.host.base_url}/api/helpdesk/webhook",
                                  data=delivery.body, headers=delivery.headers) as response:
            return response.status, await response.json()

    async def received(self, subscription: str, ticket_id: str, *, expected: int = 1,
                       within: float = 30.0) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + within
        async with self.bus.get_subscription_receiver("triage-tickets",
                                                      subscription) as receiver:
            while len(found) < expected and time.monotonic() < deadline:
                for message in await receiver.receive_messages(max_message_count=20,
                                                               max_wait_time=1):
                    await receiver.complete_message(message)
                    event = json.loads(b"".join(message.body))
                    if event["data"].get("ticketId") == ticket_id:
                        found.append(event)
        return found


@asynccontextmanager
async def triage_cloud() -> AsyncIterator[TriageCloud]:
    saved = dict(os.environ)
    with ExitStack() as servers:
        azurite = servers.enter_context(Azurite())
        devstack = servers.enter_context(DevStack(
            [ROOT / "infra/entities/servicebus.json", ROOT / "infra/entities/eventhubs.json"],
            port=0))
        model = servers.enter_context(LocalModelServer(port=0))
        grid_port = free_port()
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            bootstrap.STATE_STORAGE: azurite.connection_string,
            bootstrap.SERVICEBUS: devstack.connection_string,
            f"{bootstrap.EVENTGRID}__topicEndpointUri":
                f"http://127.0.0.1:{grid_port}/topics/triage-helpdesk/api/events",
            f"{bootstrap.EVENTGRID}__topicKey": DEV_TOPIC_KEY,
            "HELPDESK_WEBHOOK_SECRET": SECRET,
            "LLM_PROVIDER": "local", "AZURE_OPENAI_ENDPOINT": model.base_url,
            "AZURE_OPENAI_DEPLOYMENT": "chat", "LLM_TIMEOUT_SECONDS": "2",
            "LLM_MAX_RETRIES": "0", "LLM_BREAKER_MINIMUM_THROUGHPUT": "2",
            "LLM_BREAKER_BREAK_SECONDS": "2"}
        host = FunctionsHost(ROOT, functions=("triage_ticket_received",
                                              "triage_helpdesk_webhook"), settings=settings)
        await host.start()
        try:
            async with LocalEventGrid(
                    EventGridConfig.load(ROOT / "infra/entities/eventgrid.json"),
                    function_endpoint=host.event_grid_webhook,
                    dead_letter_storage=azurite.connection_string, delay_scale=0.001,
                    port=grid_port) as grid, \
                    aiohttp.ClientSession() as http, \
                    ServiceBusClient.from_connection_string(devstack.connection_string) as bus:
                yield TriageCloud(host, grid, bus, model, http, settings)
        finally:
            await host.stop()
            os.environ.clear()
            os.environ.update(saved)


def new_delivery(title: str, description: str, tier: str = "standard") -> Delivery:
    return signed(ticket_payload(f"HD-{uuid.uuid4().hex[:8]}", title, description, tier),
                  SECRET)


async def routed_per_team(cloud: TriageCloud) -> list[Check]:
    cases = [("billing", new_delivery("Charged twice", "Two charges on my invoice, refund one "
                                      "payment")),
             ("account", new_delivery("Cannot sign in", "Password reset fails, account locked")),
             ("platform", new_delivery("Dashboard down", "The site is down, we cannot work at "
                                       "all", "enterprise"))]
    checks = []
    for team, delivery in cases:
        status, _ = await cloud.webhook(delivery)
        found = await cloud.received(team, delivery.ticket_id)
        checks.append(Check(f"{delivery.ticket_id} routed to {team}",
                            status == 202 and len(found) == 1,
                            f"webhook {status}, {len(found)} on subscription {team}"))
    pages = await cloud.received("urgent", cases[2][1].ticket_id)
    checks.append(Check("the outage paged platform", len(pages) == 1
                        and pages[0]["data"]["team"] == "platform", f"{len(pages)} page(s)"))
    return checks


async def duplicate_absorbed(cloud: TriageCloud) -> list[Check]:
    delivery = new_delivery("Refund please", "Charged for a cancelled plan, refund the payment")
    answers = [await cloud.webhook(delivery) for _ in range(2)]
    found = await cloud.received("billing", delivery.ticket_id, expected=2, within=8)
    return [Check("both deliveries answered 202, the second marked duplicate",
                  [s for s, _ in answers] == [202, 202] and answers[1][1]["duplicate"] is True,
                  f"{answers}"),
            Check("routed once", len(found) == 1, f"{len(found)} classified event(s)")]


async def forged_refused(cloud: TriageCloud) -> list[Check]:
    payload = ticket_payload("HD-forged", "Free money", "Give me credit", "free")
    status, answer = await cloud.webhook(signed(payload, "not-" + SECRET))
    return [Check("a forged signature gets 401", status == 401, f"{status} {answer}")]


async def invalid_recorded(cloud: TriageCloud) -> list[Check]:
    event_id = f"bad-{uuid.uuid4().hex[:8]}"
    async with EventGridPublisherClient(cloud.grid.topic_endpoint("triage-helpdesk"),
                                        AzureKeyCredential(DEV_TOPIC_KEY)) as client:
        await client.send([{"specversion": "1.0", "id": event_id, "source": "/helpdesk",
                            "type": contracts.TICKET_CREATED, "subject": "tickets/HD-bad",
                            "data": {"ticketId": "HD-bad", "title": "no version"}}])
    delivery = cloud.grid.delivery("triage-helpdesk", "triage")
    deadline = time.monotonic() + 30
    while event_id not in delivery.stats.delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    rows = [row for row in await asyncio.to_thread(ops_triage.rejected, cloud.settings)
            if row["EventId"] == event_id]
    reason = rows[0]["Reason"] if rows else None
    return [Check("the invalid ticket is recorded with its reason", reason == "SchemaViolation",
                  f"{reason}: {rows[0]['Description'] if rows else '-'}"),
            Check("Event Grid's delivery ended at once (2xx, not retried, not dead-lettered)",
                  delivery.stats.delivered.count(event_id) == 1
                  and event_id not in delivery.stats.dead_lettered, "1 attempt")]


async def outage_then_recovery(cloud: TriageCloud) -> list[Check]:
    cloud.model.faults.outage(3600, deployment="chat")
    delivery = new_delivery("Invoice price wrong", "The invoice price is wrong, refund me")
    await cloud.webhook(delivery)
    manual = await cloud.received("manual-triage", delivery.ticket_id)
    reason = manual[0]["data"].get("manualReason") if manual else None
    cloud.model.faults.clear()
    rows = await asyncio.to_thread(ops_triage.reclassify, cloud.settings, [delivery.ticket_id])
    routed = await cloud.received("billing", delivery.ticket_id)
    return [Check("during the outage the ticket went to manual triage at once",
                  len(manual) == 1 and str(reason).startswith("model unavailable"), str(reason)),
            Check("after recovery `agents.ops triage reclassify` routed it to billing",
                  rows[0]["outcome"] == "routed" and len(routed) == 1,
                  f"{rows[0]['outcome']}, {len(routed)} on billing")]


STORIES = [("Tickets classified and routed per team", routed_per_team),
           ("A duplicate webhook is absorbed", duplicate_absorbed),
           ("A forged signature is refused", forged_refused),
           ("An invalid ticket is recorded with its reason", invalid_recorded),
           ("LLM outage -> manual triage -> re-classification", outage_then_recovery)]


async def run() -> int:
    failed = 0
    async with triage_cloud() as cloud:
        for title, story in STORIES:
            console.rule(f"[bold]{title}")
            for check in await story(cloud):
                mark = "[green]PASS[/]" if check.passed else "[red]FAIL[/]"
                console.print(f"  {mark} {check.name}: {check.detail}", highlight=False)
                failed += not check.passed
    console.print("[bold green]triage: every check passed[/]" if not failed else
                  f"[bold red]triage: {failed} check(s) failed[/]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
