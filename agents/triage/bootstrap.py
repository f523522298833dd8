"""Composes the triage agent. `bootstrap(env)` returns the `TriageAgent` wired from app
settings (the Blueprint calls it on first invocation, never at import); `build(...)` wires
the same agent onto adapters a test or the demo chose. Each call has its own schema registry.

Settings: `STATE_STORAGE` (tables), `TRIAGE_SERVICEBUS` (the `triage-tickets` topic),
`TRIAGE_EVENTGRID` (the `triage-helpdesk` topic the webhook publishes to: `__topicEndpointUri`
with the app's identity on Azure, `__topicKey` beside it only locally),
`TRIAGE_CONFIDENCE_THRESHOLD` (0.5), `HELPDESK_WEBHOOK_RATE_LIMIT` (per source IP,
`off` to turn it off), the `LLM_*` settings of `agents.reasoning`, and the
webhook's `HELPDESK_WEBHOOK_SECRET` / `HELPDESK_WEBHOOK_TOLERANCE_SECONDS` (`webhook.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agents.backbone import settings
from agents.backbone.outbox import OutboxRelay
from agents.backbone.processing import MessageProcessor
from agents.backbone.publishers import (
    EventGridPublisher,
    Publisher,
    RoutingPublisher,
    ServiceBusPublisher,
)
from agents.backbone.ratelimit import RateLimiter, RatePolicy
from agents.backbone.schemas import SchemaRegistry
from agents.backbone.store import Store
from agents.backbone.tables import state_table
from agents.contracts import triage as contracts
from agents.reasoning import Reasoner, RecordedAnswers, load_task, reasoner_from_settings
from agents.triage.handlers import HELPDESK_TOPIC, TICKETS_TOPIC, TriageAgent
from agents.triage.model import DEFAULT_CONFIDENCE_THRESHOLD

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = logging.getLogger(__name__)

TABLE = "triage"
BREAKERS_TABLE = "breakers"
STATE_STORAGE = "STATE_STORAGE"
SERVICEBUS = "TRIAGE_SERVICEBUS"
EVENTGRID = "TRIAGE_EVENTGRID"
THRESHOLD_SETTING = "TRIAGE_CONFIDENCE_THRESHOLD"
RATE_LIMITS_TABLE = "triageratelimits"
RATE_LIMIT_SETTING = "HELPDESK_WEBHOOK_RATE_LIMIT"
# Per source IP (the webhook has no function key: its HMAC is the authentication).
DEFAULT_RATE_LIMIT = "20/s burst=50 caller=ip"
PROMPTS = Path(__file__).parent / "prompts"
TASK = "classify-ticket"


def build(store: Store | TableClient, publisher: Publisher, reasoner: Reasoner | None, *,
          threshold: float = DEFAULT_CONFIDENCE_THRESHOLD, ingress: bool = True,
          limiter: RateLimiter | None = None,
          now: Callable[[], datetime] | None = None) -> TriageAgent:
    """`publisher` routes `triage-tickets`, and `triage-helpdesk` when `ingress` (the
    webhook's topic) is on."""
    schemas = SchemaRegistry({**contracts.HELPDESK_SCHEMAS, **contracts.SCHEMAS})
    return TriageAgent(
        schemas=schemas,
        tickets=MessageProcessor(store, OutboxRelay(store, publisher, now=now),
                                 registry=schemas, now=now),
        answers=RecordedAnswers(store, reasoner),
        task=load_task(PROMPTS, TASK),
        threshold=threshold,
        ingress=ingress,
        publisher=publisher,
        limiter=limiter,
    )


def bootstrap(env: Mapping[str, str]) -> TriageAgent:
    tables = settings.table_service(STATE_STORAGE, env=env)
    routes: dict[str, Publisher] = {TICKETS_TOPIC: ServiceBusPublisher(
        settings.servicebus_client(SERVICEBUS, env=env), topics={TICKETS_TOPIC})}
    if env.get(f"{EVENTGRID}__topicEndpointUri"):
        routes[HELPDESK_TOPIC] = EventGridPublisher(
            {HELPDESK_TOPIC: settings.eventgrid_publisher(EVENTGRID, env=env)})
    else:
        log.warning("%s__topicEndpointUri is not set: the helpdesk webhook answers 503 (the "
                    "Event Grid trigger still triages)", EVENTGRID)
    publisher = RoutingPublisher(routes)
    reasoner = reasoner_from_settings(env, breaker_table=state_table(tables, BREAKERS_TABLE),
                                      clock=time.time)
    threshold = float(env.get(THRESHOLD_SETTING) or DEFAULT_CONFIDENCE_THRESHOLD)
    policy = RatePolicy.from_setting("helpdesk", env, RATE_LIMIT_SETTING, DEFAULT_RATE_LIMIT)
    limiter = None if policy is None else RateLimiter(state_table(tables, RATE_LIMITS_TABLE),
                                                      policy)
    return build(state_table(tables, TABLE), publisher, reasoner, threshold=threshold,
                 ingress=HELPDESK_TOPIC in routes, limiter=limiter)
