"""The triage agent's functions: triggers translate Azure deliveries into handler calls.

Retry semantics (README.md): an event that can never be triaged is recorded with its reason
(`python -m agents.ops triage rejected` lists it) and the function returns, so Event Grid's
delivery ends with 2xx; any other failure (storage down, a lost race after every retry)
raises, the host answers 500 and Event Grid retries on its schedule, then dead-letters to blob.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import azure.functions as func

from agents.backbone.errors import PoisonMessage
from agents.backbone.lazy import Lazy
from agents.backbone.wire import parse_eventgrid
from agents.contracts import triage as contracts
from agents.triage.webhook import Unauthenticated, WebhookSettings, ticket_event, verify

# The handlers load the reasoning port and the Tables SDK: on first invocation (cold start).
if TYPE_CHECKING:
    from agents.triage.handlers import TriageAgent

log = logging.getLogger(__name__)

SWEEP_SCHEDULE = "*/30 * * * * *"
SWEEP_AFTER = timedelta(seconds=30)


def cloud_event_payload(event: func.CloudEvent) -> dict[str, Any]:
    """The structured-mode CloudEvent object the trigger was given (unset attributes left
    out)."""
    values: dict[str, Any] = {
        "id": event.id, "source": event.source, "type": event.type,
        "specversion": event.specversion, "subject": event.subject,
        "time": event.time.isoformat() if event.time else None,
        "datacontenttype": event.datacontenttype, "data": event.get_json(),
        **event.extension_attrs}
    return {key: value for key, value in values.items() if value is not None}


def on_ticket_event(payload: dict[str, Any], agent: TriageAgent) -> None:
    """Triage one delivered event; an invalid one is recorded and the delivery ends."""
    from agents.triage import handlers

    try:
        [event] = parse_eventgrid(payload, registry=agent.schemas)
        if event.type not in contracts.HELPDESK_TYPES:
            raise PoisonMessage(f"triage takes helpdesk ticket events, not {event.type}",
                                reason="UnexpectedType")
        outcome = handlers.ticket_received(event, agent)
    except PoisonMessage as error:
        handlers.reject(payload, json.dumps(payload, default=str).encode("utf-8"), error,
                        agent)
        return
    if outcome.duplicate:
        log.info("ticket event %s already handled", payload.get("id"))


def json_response(body: Any, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def helpdesk_webhook(req: func.HttpRequest, agent: TriageAgent,
                     webhook: WebhookSettings | None, *, now: Callable[[], float] = time.time
                     ) -> func.HttpResponse:
    """Rate-limited per caller (429 with `Retry-After`; every answer carries the
    `RateLimit` / `RateLimit-Policy` headers), then `_accept_webhook`."""
    if agent.limiter is None:
        return _accept_webhook(req, agent, webhook, now=now)
    admission = agent.limiter.admit_request(req.headers, req.params)
    if not admission.allowed:
        response = json_response({"status": 429, "detail": f"rate limit "
                                  f"{admission.policy.name}: retry after "
                                  f"{admission.retry_after_seconds} s"}, 429)
    else:
        response = _accept_webhook(req, agent, webhook, now=now)
    response.headers.update(admission.headers())
    return response


def _accept_webhook(req: func.HttpRequest, agent: TriageAgent,
                    webhook: WebhookSettings | None, *, now: Callable[[], float]
                    ) -> func.HttpResponse:
    """401 unless signed within the replay window; 400 for a payload that is not a ticket
    event; 202 once the event is stored for the Event Grid topic."""
    from agents.triage import handlers

    if webhook is None or not agent.ingress:
        missing = "HELPDESK_WEBHOOK_SECRET" if webhook is None else \
            "TRIAGE_EVENTGRID__topicEndpointUri"
        return json_response({"status": 503, "detail": f"{missing} is not set"}, 503)
    body = req.get_body()
    try:
        verify(webhook, req.headers, body, now=now())
    except Unauthenticated as error:
        log.warning("helpdesk webhook refused: %s", error)
        return json_response({"status": 401, "detail": str(error)}, 401)
    try:
        event = ticket_event(body)
        new = handlers.accept_helpdesk_event(event, agent)
    except PoisonMessage as error:
        return json_response({"status": 400, "detail": error.description,
                              "reason": error.reason}, 400)
    return json_response({"id": event.id, "type": event.type, "duplicate": not new}, 202)


def blueprint(compose: Callable[[], TriageAgent],
              webhook: Callable[[], WebhookSettings | None]) -> func.Blueprint:
    """The triage functions over one agent, `compose()`d on the first invocation."""
    agent = Lazy(compose)
    settings = Lazy(lambda: [webhook()])
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("triage_ticket_received")
    @bp.event_grid_trigger(arg_name="event")
    def triage_ticket_received(event: func.CloudEvent) -> None:
        on_ticket_event(cloud_event_payload(event), agent.get())

    @bp.function_name("triage_helpdesk_webhook")
    @bp.route(route="helpdesk/webhook", methods=[func.HttpMethod.POST],
              auth_level=func.AuthLevel.ANONYMOUS)
    def triage_helpdesk_webhook(req: func.HttpRequest) -> func.HttpResponse:
        return helpdesk_webhook(req, agent.get(), settings.get()[0])

    @bp.function_name("triage_outbox_sweeper")
    @bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
    def triage_outbox_sweeper(timer: func.TimerRequest) -> None:
        swept = agent.get().tickets.relay.sweep(older_than=SWEEP_AFTER)
        if swept:
            log.warning("triage sweeper published %d stale outbox rows", len(swept))

    return bp
