"""The helpdesk's signed webhooks, as many SaaS helpdesks send them (Zendesk's scheme):
`X-Helpdesk-Signature` = base64(HMAC-SHA256(secret, timestamp + body)) and
`X-Helpdesk-Signature-Timestamp` = the Unix time of signing.

A request is accepted only when its signature matches (constant-time compare) and its
timestamp lies within the replay window; a replay inside the window carries the same
delivery id, which the inbox absorbs. The payload becomes the CloudEvent the Event Grid
topic carries, published through the outbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.backbone.envelope import Envelope
from agents.backbone.errors import ConfigurationError, InvalidEvent
from agents.contracts import triage as contracts

SIGNATURE_HEADER = "X-Helpdesk-Signature"
TIMESTAMP_HEADER = "X-Helpdesk-Signature-Timestamp"
SECRET_SETTING = "HELPDESK_WEBHOOK_SECRET"
TOLERANCE_SETTING = "HELPDESK_WEBHOOK_TOLERANCE_SECONDS"
DEFAULT_TOLERANCE = 300.0
# The helpdesk's event names and the CloudEvent types they become.
EVENT_TYPES = {"ticket.created": contracts.TICKET_CREATED,
               "ticket.updated": contracts.TICKET_UPDATED,
               "ticket.commented": contracts.TICKET_COMMENTED}


class Unauthenticated(Exception):
    """The request is not provably from the helpdesk (401); the message says why."""


@dataclass(frozen=True)
class WebhookSettings:
    secret: bytes
    tolerance: float = DEFAULT_TOLERANCE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings | None:
        """None when no secret is set (the webhook then refuses every request with 503).
        On Azure the setting is a Key Vault reference the platform resolves."""
        secret = env.get(SECRET_SETTING, "")
        if not secret:
            return None
        if secret.startswith("@Microsoft.KeyVault("):
            raise ConfigurationError(f"{SECRET_SETTING} is an unresolved Key Vault reference: "
                                     "grant the app's identity 'Key Vault Secrets User'")
        return cls(secret.encode("utf-8"),
                   float(env.get(TOLERANCE_SETTING) or DEFAULT_TOLERANCE))


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode("ascii") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(settings: WebhookSettings, headers: Mapping[str, str], body: bytes, *,
           now: float) -> None:
    """Raise `Unauthenticated` unless the request is signed with the secret within the
    replay window around `now` (Unix seconds)."""
    signature = headers.get(SIGNATURE_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise Unauthenticated(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        signed_at = float(timestamp)
    except ValueError:
        raise Unauthenticated(f"{TIMESTAMP_HEADER} is not a Unix time") from None
    if abs(now - signed_at) > settings.tolerance:
        raise Unauthenticated(f"signed {now - signed_at:.0f} s from now: outside the "
                              f"{settings.tolerance:.0f} s replay window")
    expected = sign(settings.secret, timestamp, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace")):
        raise Unauthenticated("signature does not match")


def ticket_event(body: bytes) -> Envelope:
    """The CloudEvent for one webhook payload `{"id", "event", "occurredAt", "ticket",
    "comment"?}`: id = the helpdesk's delivery id (stable across its retries), subject =
    `tickets/<id>`. The data is checked against the type's schema by the caller."""
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise InvalidEvent(f"body is not JSON: {error}", reason="InvalidEncoding") from None
    if not isinstance(payload, dict):
        raise InvalidEvent("body must be a JSON object", reason="InvalidPayload")
    for name in ("id", "event", "ticket"):
        if not payload.get(name):
            raise InvalidEvent(f"payload has no {name!r}", reason="InvalidPayload")
    event_type = EVENT_TYPES.get(str(payload["event"]))
    if event_type is None:
        raise InvalidEvent(f"helpdesk event {payload['event']!r} is not one of "
                           f"{', '.join(EVENT_TYPES)}", reason="UnknownEventType")
    ticket = payload["ticket"]
    if not isinstance(ticket, dict):
        raise InvalidEvent("ticket must be a JSON object", reason="InvalidPayload")
    data: dict[str, Any] = {**ticket}
    if payload.get("comment") is not None:
        data["comment"] = payload["comment"]
    return Envelope.new(event_type, data, source=contracts.HELPDESK_SOURCE,
                        subject=f"tickets/{ticket.get('ticketId')}", id=str(payload["id"]),
                        time=_time(payload.get("occurredAt")))


def _time(value: object) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"occurredAt {value!r} is not RFC 3339",
                           reason="InvalidPayload") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
