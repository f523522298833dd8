"""The helpdesk webhook: signature, replay window, mapping to the CloudEvent, 202."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from agents.contracts import triage as contracts
from agents.triage.blueprint import helpdesk_webhook
from agents.triage.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Unauthenticated,
    WebhookSettings,
    sign,
    verify,
)
from tests.unit.triage.support import ScriptedModel, agent

SECRET = b"helpdesk-secret"
SETTINGS = WebhookSettings(SECRET, tolerance=300)
NOW = 1_800_000_000.0


def body(delivery: str = "d-1", event: str = "ticket.created") -> bytes:
    return json.dumps({"id": delivery, "event": event, "occurredAt": "2026-12-02T05:00:00Z",
                       "ticket": {"ticketId": "T-1", "version": 1, "title": "Charged twice",
                                  "description": "Two charges on my invoice.",
                                  "requester": {"email": "ana@example.com"}}}).encode()


def signed(raw: bytes, *, at: float = NOW, secret: bytes = SECRET) -> dict[str, str]:
    timestamp = str(int(at))
    return {SIGNATURE_HEADER: sign(secret, timestamp, raw), TIMESTAMP_HEADER: timestamp}


def request(raw: bytes, headers: dict[str, str]) -> func.HttpRequest:
    return func.HttpRequest("POST", "/api/helpdesk/webhook", headers=headers, body=raw)


def test_a_signed_request_within_the_window_is_accepted() -> None:
    verify(SETTINGS, signed(body()), body(), now=NOW + 299)


def test_a_forged_signature_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="does not match"):
        verify(SETTINGS, signed(body(), secret=b"guess"), body(), now=NOW)


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="does not match"):
        verify(SETTINGS, signed(body()), body().replace(b"twice", b"once"), now=NOW)


def test_a_request_signed_outside_the_replay_window_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="replay window"):
        verify(SETTINGS, signed(body(), at=NOW - 301), body(), now=NOW)


def test_an_unsigned_request_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="missing"):
        verify(SETTINGS, {}, body(), now=NOW)


def test_the_webhook_answers_202_and_publishes_the_ticket_event_to_event_grid() -> None:
    triage, _, published = agent(ScriptedModel())
    response = helpdesk_webhook(request(body(), signed(body())), triage, SETTINGS,
                                now=lambda: NOW)
    assert response.status_code == 202
    [row] = published.sent
    assert row.destination == "triage-helpdesk"
    assert row.envelope.type == contracts.TICKET_CREATED and row.envelope.id == "d-1"
    assert row.envelope.subject == "tickets/T-1"
    assert row.envelope.data["ticketId"] == "T-1"


def test_a_repeated_delivery_is_accepted_and_published_once() -> None:
    triage, _, published = agent(ScriptedModel())
    for _ in range(2):
        response = helpdesk_webhook(request(body(), signed(body())), triage, SETTINGS,
                                    now=lambda: NOW)
        assert response.status_code == 202
    assert json.loads(response.get_body())["duplicate"] is True
    assert len(published.sent) == 1


def test_a_forged_webhook_gets_401_and_publishes_nothing() -> None:
    triage, _, published = agent(ScriptedModel())
    response = helpdesk_webhook(request(body(), signed(body(), secret=b"x")), triage,
                                SETTINGS, now=lambda: NOW)
    assert response.status_code == 401
    assert published.sent == []


def test_a_signed_payload_that_is_not_a_ticket_event_gets_400() -> None:
    triage, _, published = agent(ScriptedModel())
    raw = body(event="ticket.deleted")
    response = helpdesk_webhook(request(raw, signed(raw)), triage, SETTINGS, now=lambda: NOW)
    assert response.status_code == 400
    assert json.loads(response.get_body())["reason"] == "UnknownEventType"
    assert published.sent == []


def test_without_a_secret_the_webhook_refuses_with_503() -> None:
    triage, _, _ = agent(ScriptedModel())
    response = helpdesk_webhook(request(body(), signed(body())), triage, None, now=lambda: NOW)
    assert response.status_code == 503


def test_an_unresolved_key_vault_reference_is_a_configuration_error() -> None:
    from agents.backbone.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="Key Vault"):
        WebhookSettings.from_env({"HELPDESK_WEBHOOK_SECRET": "@Microsoft.KeyVault(SecretUri=x)"})
