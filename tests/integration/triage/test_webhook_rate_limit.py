"""The helpdesk webhook's rate limit per source IP, shared through Table (Azurite)."""

from __future__ import annotations

import uuid

import azure.functions as func
from azure.data.tables import TableServiceClient

from agents.backbone.memory import MemoryStore
from agents.backbone.ratelimit import RateLimiter, RatePolicy
from agents.backbone.tables import state_table
from agents.triage import bootstrap
from agents.triage.blueprint import helpdesk_webhook
from agents.triage.handlers import TriageAgent
from agents.triage.webhook import WebhookSettings
from devstack.azurite import Azurite
from tests.unit.triage.support import RecordingPublisher
from tests.unit.triage.test_webhook import NOW, SECRET, body, signed


def limited_agent(azurite: Azurite, spec: str) -> TriageAgent:
    tables = TableServiceClient.from_connection_string(azurite.connection_string)
    limiter = RateLimiter(state_table(tables, f"ratelimit{uuid.uuid4().hex[:10]}"),
                          RatePolicy.parse("helpdesk", spec), clock=lambda: NOW)
    return bootstrap.build(MemoryStore(), RecordingPublisher(), None, limiter=limiter)


def post(agent: TriageAgent, delivery: str, ip: str) -> func.HttpResponse:
    raw = body(delivery)
    request = func.HttpRequest("POST", "/api/helpdesk/webhook", body=raw,
                               headers={**signed(raw), "X-Forwarded-For": ip})
    return helpdesk_webhook(request, agent, WebhookSettings(SECRET), now=lambda: NOW)


def test_a_caller_over_its_rate_gets_429_with_retry_after(azurite: Azurite) -> None:
    agent = limited_agent(azurite, "2/min burst=2 caller=ip")
    answers = [post(agent, f"d-{n}", "203.0.113.7") for n in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert int(answers[2].headers["Retry-After"]) > 0
    assert all("RateLimit" in a.headers and "RateLimit-Policy" in a.headers for a in answers)


def test_another_caller_keeps_its_own_budget(azurite: Azurite) -> None:
    agent = limited_agent(azurite, "1/min burst=1 caller=ip")
    assert post(agent, "d-1", "203.0.113.7").status_code == 202
    assert post(agent, "d-2", "198.51.100.9").status_code == 202
