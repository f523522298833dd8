"""`python -m agents.ops triage ...` against Azurite, devstack and the local model: tickets in
manual triage listed with their reasons, recorded invalid events, re-classification after
the model is back (routed to the team's subscription)."""

from __future__ import annotations

import json
import uuid

from agents.backbone import Envelope
from agents.contracts import triage as contracts
from agents.triage import bootstrap, handlers
from agents.triage.blueprint import on_ticket_event
from devstack.llm import LocalModelServer
from tests.integration.ops.bus import receive_all


def new_ticket(title: str, description: str) -> Envelope:
    ticket_id = f"T-{uuid.uuid4().hex[:10]}"
    return Envelope.new(contracts.TICKET_CREATED, {
        "ticketId": ticket_id, "version": 1, "title": title, "description": description,
        "requester": {"email": "ana@example.com", "tier": "standard"}},
        source=contracts.HELPDESK_SOURCE, subject=f"tickets/{ticket_id}")


def model_settings(model: LocalModelServer) -> dict[str, str]:
    return {"LLM_PROVIDER": "local", "AZURE_OPENAI_ENDPOINT": model.base_url,
            "AZURE_OPENAI_DEPLOYMENT": "chat", "LLM_MAX_RETRIES": "0"}


def test_manual_lists_a_ticket_the_model_could_not_classify_with_the_reason(ops, values):
    event = new_ticket("Charged twice", "Two charges on my invoice")
    with bootstrap.bootstrap(values) as agent:  # LLM_PROVIDER unset: no model
        handlers.ticket_received(event, agent)
    result = ops("triage", "manual", "--json")
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.output) if r["ticketId"] == event.data["ticketId"]]
    assert row["manualReason"] == "model unavailable: no model configured (LLM_PROVIDER=none)"


def test_reclassify_routes_manual_tickets_once_the_model_is_back(ops, values, bus,
                                                                 local_model):
    event = new_ticket("Locked out", "Password reset fails and my account is locked")
    ticket_id = event.data["ticketId"]
    with bootstrap.bootstrap(values) as agent:
        handlers.ticket_received(event, agent)
    receive_all(bus, "triage-tickets", subscription="manual-triage")
    result = ops("triage", "reclassify", "--ticket", ticket_id, "--json",
                 extra=model_settings(local_model))
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["outcome"], row["team"]) == ("routed", "account")
    [routed] = receive_all(bus, "triage-tickets", subscription="account")
    assert json.loads(b"".join(routed.body))["data"]["ticketId"] == ticket_id
    listed = json.loads(ops("triage", "manual", "--json").output)
    assert ticket_id not in {r["ticketId"] for r in listed}


def test_reclassify_while_the_model_is_down_leaves_the_ticket_in_manual_triage(ops, values,
                                                                               local_model):
    event = new_ticket("Invoice wrong", "The invoice price is wrong")
    with bootstrap.bootstrap(values) as agent:
        handlers.ticket_received(event, agent)
    local_model.faults.outage(60, deployment="chat")
    result = ops("triage", "reclassify", "--ticket", event.data["ticketId"], "--json",
                 extra=model_settings(local_model))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["outcome"] == "still manual"


def test_rejected_lists_an_invalid_event_with_its_reason(ops, values):
    bad = new_ticket("No version", "The helpdesk sent no version").to_dict()
    del bad["data"]["version"]
    with bootstrap.bootstrap(values) as agent:
        on_ticket_event(bad, agent)
    result = ops("triage", "rejected", "--json")
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.output) if r["EventId"] == bad["id"]]
    assert row["Reason"] == "SchemaViolation" and "version" in row["Description"]


def test_reclassify_needs_a_ticket_or_all(ops):
    assert ops("triage", "reclassify").exit_code == 2
