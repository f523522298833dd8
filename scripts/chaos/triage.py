"""The triage workload: helpdesk tickets through the signed webhook, the outbox, Event Grid and
the trigger, with updates out of order, deliveries repeated, forged and malformed webhooks
and invalid events published straight to the Event Grid topic; judged from the triage table
(ticket states, rejected events), the team subscriptions of `triage-tickets` (where the
classifications stay: no consumer in the app) and Event Grid's delivery record.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from azure.core.credentials import AzureKeyCredential
from azure.eventgrid.aio import EventGridPublisherClient

from agents.backbone.envelope import parse_time
from agents.backbone.tables import STATE_ROW, table_key
from agents.contracts import triage as contracts
from agents.ops import triage as ops_triage
from agents.triage import bootstrap
from agents.triage.handlers import REJECTED_PARTITION, REJECTED_PREFIX, TICKETS_TOPIC
from agents.triage.model import URGENT, Status, TicketState
from scripts.chaos.core import (
    HELPDESK_TOPIC,
    POST_DEADLINE_SECONDS,
    WEBHOOK_SECRET,
    ChaosCloud,
    Invariant,
    Report,
    Say,
    Violation,
    Workload,
    judge,
    peek,
)
from scripts.helpdesk import TICKETS, signed

TEAM_SUBSCRIPTIONS = ("billing", "platform", "account", "manual-triage")
PAGES_SUBSCRIPTION = "urgent"
GRID_SUBSCRIPTION = "triage"
EVENT_OF = {1: "ticket.created", 2: "ticket.updated", 3: "ticket.commented"}


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery the helpdesk makes (a repeat has the same delivery id)."""

    ticket_id: str
    version: int
    delivery_id: str
    payload: dict[str, Any]
    repeats: int = 1


@dataclass(frozen=True)
class TicketPlan:
    ticket_id: str
    at: float
    deliveries: tuple[Delivery, ...]
    """In the order the helpdesk sends them (an update may overtake the one before it)."""
    titles: dict[int, str]
    """Version -> title, to compare the stored ticket with the version it claims."""


@dataclass(frozen=True)
class InvalidEvent:
    event_id: str
    event: dict[str, Any]
    why: str


def _payload(rng: random.Random, ticket_id: str, version: int, title: str, description: str,
             tier: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"evt-{uuid.UUID(int=rng.getrandbits(128), version=4).hex}",
        "event": EVENT_OF[version],
        "occurredAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ticket": {"ticketId": ticket_id, "version": version, "title": title,
                   "description": description,
                   "requester": {"email": f"customer-{ticket_id.lower()}@example.com",
                                 "tier": tier}}}
    if version == 3:
        payload["comment"] = {"author": "customer", "body": f"{description} Any news?"}
    return payload


def plan_tickets(rng: random.Random, tickets: int, duration: float) -> list[TicketPlan]:
    """Tickets with 1-3 versions (a third of the three-version ones sent v3 before v2) and
    about a fifth of the deliveries repeated."""
    plans = []
    for number in range(tickets):
        title, description, tier = rng.choice(TICKETS)
        ticket_id = f"HD-chaos-{number}"
        versions = rng.choices((1, 2, 3), (0.5, 0.25, 0.25))[0]
        titles = {version: title if version == 1 else f"{title} (v{version})"
                  for version in range(1, versions + 1)}
        deliveries = [Delivery(ticket_id, version, "", _payload(
            rng, ticket_id, version, titles[version], description, tier),
            2 if rng.random() < 0.2 else 1) for version in range(1, versions + 1)]
        deliveries = [Delivery(d.ticket_id, d.version, str(d.payload["id"]), d.payload, d.repeats)
                      for d in deliveries]
        if versions == 3 and rng.random() < 0.34:
            deliveries = [deliveries[0], deliveries[2], deliveries[1]]
        plans.append(TicketPlan(ticket_id, duration * 0.9 * number / max(tickets, 1),
                                tuple(deliveries), titles))
    return plans


def invalid_events(rng: random.Random, count: int) -> list[InvalidEvent]:
    """Events on the Event Grid topic that no schema admits (the partner-topic route)."""
    def event(number: int) -> InvalidEvent:
        event_id = f"chaos-invalid-{number}-{rng.getrandbits(32):08x}"
        ticket = {"ticketId": f"HD-invalid-{number}", "version": 1, "title": "Broken",
                  "description": "An event no schema admits",
                  "requester": {"email": "someone@example.com", "tier": "standard"}}
        flavour, why = [
            ({k: v for k, v in ticket.items() if k != "version"}, "a ticket without version"),
            ({**ticket, "version": 0}, "version 0"),
            ({**ticket, "requester": {"email": "x@example.com", "tier": "platinum"}},
             "an unknown tier"),
        ][number % 3]
        return InvalidEvent(event_id, {"specversion": "1.0", "id": event_id,
                                       "source": contracts.HELPDESK_SOURCE,
                                       "type": contracts.TICKET_CREATED,
                                       "subject": f"tickets/{ticket['ticketId']}",
                                       "data": flavour}, why)

    return [event(number) for number in range(count)]


# ---------------------------------------------------------------- evidence and invariants

@dataclass(frozen=True)
class Classified:
    """A `triage.ticket.classified` (or page) as it sits on a subscription of the topic."""

    event_id: str
    subscription: str
    ticket_id: str
    version: int | None
    team: str
    manual: bool
    priority: str
    manual_reason: str | None
    at: datetime
    """Its CloudEvent `time`: when the agent decided it."""

    @property
    def routing(self) -> tuple[str, bool, str, str | None]:
        """What the agent routes by: a message is due when any of it changes."""
        return self.team, self.manual, self.priority, self.manual_reason


@dataclass
class TriageEvidence:
    plans: dict[str, TicketPlan]
    accepted: dict[str, int]
    """Ticket -> the highest version whose delivery the webhook answered 202."""
    attempted: dict[str, int]
    """Ticket -> the highest version sent (answered or not)."""
    states: dict[str, TicketState]
    classified: list[Classified]
    pages: list[Classified]
    invalid: dict[str, InvalidEvent]
    rejected: dict[str, list[dict[str, Any]]]
    """Event id -> its rows in the `rejected` partition."""
    refused: dict[str, tuple[int | None, int]]
    """Ticket id of a forged or malformed webhook -> (its answer, the answer it must get)."""
    given_up: dict[str, str]
    """Event id -> why Event Grid dead-lettered or dropped it."""
    copies: Counter[str] = field(default_factory=Counter)
    """Event id of a classification -> how many messages of it the subscriptions hold."""


def _classified_once(evidence: TriageEvidence) -> list[Violation]:
    found = []
    for ticket_id, state in sorted(evidence.states.items()):
        if ticket_id not in evidence.plans:
            continue
        seen = sorted((c for c in evidence.classified if c.ticket_id == ticket_id),
                      key=lambda c: (c.version or 0, c.at))
        routes = [c.routing for c in seen]
        problems = []
        if not seen:
            problems.append("no classification on any team subscription")
        # One version is classified again only out of manual triage (the ops re-classification).
        again = [f"v{b.version} {b.team} after {a.team}" for a, b in itertools.pairwise(seen)
                 if a.version == b.version and not a.manual]
        if again:
            problems.append(f"classified twice for one version: {', '.join(again)}")
        if any(a == b for a, b in itertools.pairwise(routes)):
            problems.append(f"the same routing sent again: {routes}")
        kept = (state.team, state.status is Status.MANUAL, state.priority, state.manual_reason)
        if seen and routes[-1] != kept:
            problems.append(f"last classification {routes[-1]}, state {kept}")
        if state.status is Status.MANUAL and not state.manual_reason:
            problems.append("in manual triage without a reason")
        if state.status is Status.MANUAL and seen and not seen[-1].manual_reason:
            problems.append("its manual-triage message carries no reason")
        if problems:
            found.append(Violation((ticket_id,), "; ".join(problems)))
    return found


def _state_matches_last_event(evidence: TriageEvidence) -> list[Violation]:
    found = []
    for ticket_id, accepted in sorted(evidence.accepted.items()):
        state = evidence.states.get(ticket_id)
        if state is None:
            continue  # "nothing lost" reports it
        plan = evidence.plans[ticket_id]
        if not accepted <= state.version <= evidence.attempted[ticket_id]:
            found.append(Violation((ticket_id,), f"state at version {state.version}, last "
                                                 f"accepted version {accepted}"))
        elif state.input.get("title") != plan.titles.get(state.version):
            found.append(Violation((ticket_id,), f"version {state.version} holds title "
                                                 f"{state.input.get('title')!r}, sent "
                                                 f"{plan.titles.get(state.version)!r}"))
    return found


def _nothing_lost(evidence: TriageEvidence) -> list[Violation]:
    found = [Violation((ticket_id,), f"accepted (202) up to version {version}, no ticket state")
             for ticket_id, version in sorted(evidence.accepted.items())
             if ticket_id not in evidence.states]
    found += [Violation((event_id,), f"Event Grid gave it up: {why}")
              for event_id, why in sorted(evidence.given_up.items())]
    return found


def _invalid_rejected(evidence: TriageEvidence) -> list[Violation]:
    found = []
    for event_id, invalid in sorted(evidence.invalid.items()):
        rows = evidence.rejected.get(event_id, [])
        if len(rows) != 1 or not rows[0].get("Reason") or not rows[0].get("Description"):
            found.append(Violation((event_id,), f"{invalid.why}: {len(rows)} rejected row(s) "
                                                f"{[r.get('Reason') for r in rows]}"))
    found += [Violation((event_id,), f"rejected but valid: {rows[0].get('Reason')}: "
                                     f"{rows[0].get('Description')}")
              for event_id, rows in sorted(evidence.rejected.items())
              if event_id not in evidence.invalid]
    return found


def _invalid_webhooks_refused(evidence: TriageEvidence) -> list[Violation]:
    return [Violation((ticket_id,), f"answered {status}, expected {expected}"
                      + ("; a ticket state exists" if ticket_id in evidence.states else ""))
            for ticket_id, (status, expected) in sorted(evidence.refused.items())
            if status != expected or ticket_id in evidence.states]


def _paged_once(evidence: TriageEvidence) -> list[Violation]:
    found = []
    pages = Counter(page.ticket_id for page in evidence.pages)
    for ticket_id, state in sorted(evidence.states.items()):
        routed_urgent = any(c.ticket_id == ticket_id and not c.manual and c.priority == URGENT
                            for c in evidence.classified)
        must = state.routing().pages
        if pages[ticket_id] > 1 or (must and pages[ticket_id] != 1) or \
                (pages[ticket_id] and not routed_urgent):
            found.append(Violation((ticket_id,), f"{pages[ticket_id]} page(s); state "
                                                 f"{state.status.value} {state.priority}"))
    return found


TRIAGE_INVARIANTS: list[Invariant[TriageEvidence]] = [
    Invariant("each ticket classified once per routing (manual: with its reason)",
              _classified_once),
    Invariant("each ticket's state is its last accepted version", _state_matches_last_event),
    Invariant("no accepted ticket lost (stored; nothing given up by Event Grid)",
              _nothing_lost),
    Invariant("every invalid event rejected once with its reason, nothing else rejected",
              _invalid_rejected),
    Invariant("forged and malformed webhooks refused, leaving no ticket",
              _invalid_webhooks_refused),
    Invariant("an urgent ticket routed to a team paged once", _paged_once),
]


# ---------------------------------------------------------------- the workload

@dataclass
class Answered:
    delivery: Delivery
    status: int | None
    duplicate: bool
    attempts: int
    seconds: float


class TriageWorkload(Workload):
    """Signed helpdesk webhooks with updates, repeats and bad input."""

    name = "triage"
    sweepers = ("triage_outbox_sweeper",)
    sinks = tuple(f"{TICKETS_TOPIC}/{name}" for name in (*TEAM_SUBSCRIPTIONS,
                                                          PAGES_SUBSCRIPTION))

    def __init__(self, rng: random.Random, tickets: int, duration: float) -> None:
        self.plans = plan_tickets(rng, tickets, duration)
        self.invalid = invalid_events(rng, max(3, tickets // 20)) if tickets else []
        self.invalid_at = duration * rng.uniform(0.2, 0.7)
        self.refusals = 2 if tickets else 0
        self.answered: list[Answered] = []
        self.refused: dict[str, tuple[int | None, int]] = {}
        self.reclassified: Counter[str] = Counter()

    async def prepare(self, cloud: ChaosCloud) -> None:
        """Nothing to arrange: the webhook and Event Grid take tickets as they come."""

    async def _post(self, cloud: ChaosCloud, body: bytes, secret: str
                    ) -> tuple[int | None, dict[str, Any], int]:
        """POST a webhook as the helpdesk does: signed now, retried on connection failures,
        429 and 5xx with backoff until the deadline."""
        give_up, attempts = time.monotonic() + POST_DEADLINE_SECONDS, 0
        status: int | None = None
        answer: dict[str, Any] = {}
        while True:
            attempts += 1
            delivery = signed(json.loads(body), secret)
            try:
                async with cloud.http.post(f"{cloud.host.base_url}/api/helpdesk/webhook",
                                           data=delivery.body,
                                           headers=delivery.headers) as response:
                    status = response.status
                    text = await response.text()
                    answer = json.loads(text) if text else {}
                if status < 500 and status not in (408, 429):
                    return status, answer, attempts
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
                status, answer = None, {}
            if time.monotonic() > give_up:
                return status, answer, attempts
            await asyncio.sleep(min(0.25 * 2 ** attempts, 4.0))

    async def _deliver(self, cloud: ChaosCloud, delivery: Delivery) -> None:
        began = time.monotonic()
        status, answer, attempts = await self._post(
            cloud, json.dumps(delivery.payload).encode(), WEBHOOK_SECRET)
        self.answered.append(Answered(delivery, status, bool(answer.get("duplicate")),
                                      attempts, time.monotonic() - began))

    async def _ticket(self, cloud: ChaosCloud, plan: TicketPlan, started: float) -> None:
        await asyncio.sleep(max(0.0, started + plan.at - time.monotonic()))
        for delivery in plan.deliveries:
            if delivery.repeats > 1:  # the helpdesk sends it again at once (a lost answer)
                await asyncio.gather(*(self._deliver(cloud, delivery)
                                       for _ in range(delivery.repeats)))
            else:
                await self._deliver(cloud, delivery)
            await asyncio.sleep(0.5)

    async def _bad_input(self, cloud: ChaosCloud, started: float) -> None:
        await asyncio.sleep(max(0.0, started + self.invalid_at - time.monotonic()))
        if self.refusals:
            forged = _payload(random.Random(0), "HD-chaos-forged", 1, "Free money",
                              "Give me credit", "free")
            status, _, _ = await self._post(cloud, json.dumps(forged).encode(),
                                            "not-" + WEBHOOK_SECRET)
            self.refused["HD-chaos-forged"] = (status, 401)
            malformed = {"id": "evt-chaos-malformed", "event": "ticket.created",
                         "ticket": {"ticketId": "HD-chaos-malformed", "title": "no version"}}
            status, _, _ = await self._post(cloud, json.dumps(malformed).encode(),
                                            WEBHOOK_SECRET)
            self.refused["HD-chaos-malformed"] = (status, 400)
        if self.invalid:
            async with EventGridPublisherClient(cloud.grid.topic_endpoint(HELPDESK_TOPIC),
                                                AzureKeyCredential(_topic_key(cloud))) as client:
                await client.send([invalid.event for invalid in self.invalid])

    async def drive(self, cloud: ChaosCloud, started: float, say: Say) -> None:
        await asyncio.gather(self._bad_input(cloud, started),
                             *(self._ticket(cloud, plan, started) for plan in self.plans))
        say(f"triage: {len(self.answered)} webhook deliveries made")

    async def close(self, cloud: ChaosCloud) -> None:
        """The model is back: the operator re-classifies every manual ticket
        (`python -m agents.ops triage reclassify --all`), as the README says to."""
        if self.plans:
            rows = await asyncio.to_thread(ops_triage.reclassify, cloud.host.settings, None)
            self.reclassified = Counter(str(row["outcome"]) for row in rows)

    def _accepted(self) -> tuple[dict[str, int], dict[str, int]]:
        accepted: dict[str, int] = {}
        attempted: dict[str, int] = {}
        for answered in self.answered:
            ticket, version = answered.delivery.ticket_id, answered.delivery.version
            attempted[ticket] = max(attempted.get(ticket, 0), version)
            if answered.status == 202:
                accepted[ticket] = max(accepted.get(ticket, 0), version)
        return accepted, attempted

    def _states(self, cloud: ChaosCloud) -> dict[str, TicketState]:
        table = cloud.tables.get_table_client(bootstrap.TABLE)
        states = {}
        for row in table.query_entities("RowKey eq @row", parameters={"row": STATE_ROW}):
            state = TicketState.from_state(json.loads(row["state"]))
            states[state.ticket_id] = state
        return states

    def _rejected(self, cloud: ChaosCloud) -> dict[str, list[dict[str, Any]]]:
        table = cloud.tables.get_table_client(bootstrap.TABLE)
        rejected: dict[str, list[dict[str, Any]]] = {}
        for row in table.query_entities("PartitionKey eq @partition",
                                        parameters={"partition": table_key(REJECTED_PARTITION)}):
            if str(row["RowKey"]).startswith(REJECTED_PREFIX):
                rejected.setdefault(str(row["EventId"]), []).append(dict(row))
        return rejected

    async def unfinished(self, cloud: ChaosCloud) -> int:
        """Accepted tickets not yet at their last accepted version, and invalid events not
        yet rejected."""
        accepted, _ = self._accepted()
        states = await asyncio.to_thread(self._states, cloud)
        rejected = await asyncio.to_thread(self._rejected, cloud)
        return sum(ticket not in states or states[ticket].version < version
                   for ticket, version in accepted.items()) + \
            sum(invalid.event_id not in rejected for invalid in self.invalid)

    def _subscriptions(self, cloud: ChaosCloud) -> tuple[list[Classified], list[Classified]]:
        def read(subscription: str) -> list[Classified]:
            found = []
            for message in peek(cloud, f"{TICKETS_TOPIC}/{subscription}"):
                event = json.loads(message.body)
                data = event.get("data") or {}
                found.append(Classified(
                    str(event.get("id")), subscription, str(data.get("ticketId")),
                    data.get("version"), str(data.get("team")), bool(data.get("manual")),
                    str(data.get("priority")), data.get("manualReason"),
                    parse_time(event.get("time"))))
            return found

        classified = [c for subscription in TEAM_SUBSCRIPTIONS for c in read(subscription)]
        return classified, read(PAGES_SUBSCRIPTION)

    async def collect(self, cloud: ChaosCloud) -> Report:
        accepted, attempted = self._accepted()
        states = await asyncio.to_thread(self._states, cloud)
        rejected = await asyncio.to_thread(self._rejected, cloud)
        messages, pages = await asyncio.to_thread(self._subscriptions, cloud)
        copies = Counter(message.event_id for message in messages)
        classified = list({message.event_id: message for message in messages}.values())
        unique_pages = list({page.event_id: page for page in pages}.values())
        stats = cloud.grid.delivery(HELPDESK_TOPIC, GRID_SUBSCRIPTION).stats
        given_up = {event_id: stats.reasons.get(event_id, "dead-lettered")
                    for event_id in (*stats.dead_lettered, *stats.dropped)}
        evidence = TriageEvidence(
            {plan.ticket_id: plan for plan in self.plans}, accepted, attempted, states,
            classified, unique_pages, {invalid.event_id: invalid for invalid in self.invalid},
            rejected, dict(self.refused), given_up, copies)
        ours = [state for ticket, state in states.items() if ticket in evidence.plans]
        manual = Counter(_reason_kind(state.manual_reason) for state in ours
                         if state.status is Status.MANUAL)
        statuses = Counter(str(answered.status) for answered in self.answered)
        return Report(self.name, judge(TRIAGE_INVARIANTS, evidence), {
            "triage: tickets, versions, deliveries": (
                f"{len(self.plans)} tickets, {sum(len(p.deliveries) for p in self.plans)} "
                f"versions, {len(self.answered)} deliveries "
                f"({sum(d.repeats - 1 for p in self.plans for d in p.deliveries)} repeated, "
                f"{sum(p.deliveries[1].version == 3 for p in self.plans if len(p.deliveries) == 3)}"
                " tickets with v3 before v2)"),
            "triage: webhook answers": (", ".join(
                f"{status}: {count}" for status, count in sorted(statuses.items())) or "none")
                + f"; {sum(a.duplicate for a in self.answered)} marked duplicate, "
                  f"{sum(a.attempts - 1 for a in self.answered)} client retries",
            "triage: tickets by state": ", ".join(
                f"{key}: {count}" for key, count in sorted(Counter(
                    f"{s.status.value}/{s.team}" for s in ours).items())) or "none",
            "triage: sent to manual triage during the run (by reason)": ", ".join(
                f"{reason}: {count}" for reason, count in Counter(
                    _reason_kind(c.manual_reason) for c in classified if c.manual).most_common())
                or "none",
            "triage: re-classified once the model was back (agents.ops triage reclassify)":
                ", ".join(f"{outcome}: {count}" for outcome, count
                          in sorted(self.reclassified.items())) or "none",
            "triage: still in manual triage (by reason)": ", ".join(
                f"{reason}: {count}" for reason, count in manual.most_common()) or "none",
            "triage: classified by": ", ".join(f"{by}: {count}" for by, count in sorted(
                Counter(state.classified_by for state in ours).items())) or "none",
            "triage: classifications on the subscriptions": (
                f"{len(classified)} ({sum(n - 1 for n in copies.values())} extra copies of "
                f"one event id), {len(unique_pages)} pages"),
            "triage: invalid input": f"{len(self.invalid)} invalid events on the topic, "
                                     f"{sum(len(rows) for rows in rejected.values())} rejected "
                                     f"rows, {len(self.refused)} refused webhooks",
            "triage: Event Grid deliveries": f"{stats.attempts} attempts, "
                                             f"{len(stats.delivered)} delivered, "
                                             f"{len(given_up)} given up",
        }, [], {"POST /api/helpdesk/webhook (client-observed, retries included)":
                [answered.seconds for answered in self.answered if answered.status == 202]})


def _reason_kind(reason: str | None) -> str:
    """`model unavailable: ReasonerOpen: ...` -> `model unavailable: ReasonerOpen`."""
    text = reason or "-"
    return ":".join(text.split(":")[:2]).strip()


def _topic_key(cloud: ChaosCloud) -> str:
    return next(topic.key for topic in cloud.grid.config.topics if topic.name == HELPDESK_TOPIC)
