"""A helpdesk simulator: posts realistic signed webhooks (Zendesk's signing scheme) to the
triage agent's `POST /api/helpdesk/webhook`.

    .venv/bin/python scripts/helpdesk.py --url http://127.0.0.1:7071 --secret "$SECRET"
    .venv/bin/python scripts/helpdesk.py --forge        # a wrong secret: expect 401
    .venv/bin/python scripts/helpdesk.py --repeat 2     # each delivery twice: one effect
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.triage.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

# (title, description, tier): one per team, an outage that pages, a how-to question.
TICKETS = [
    ("Charged twice for March", "My invoice shows two charges for the same plan, please "
     "refund one payment.", "standard"),
    ("Cannot sign in", "Password reset fails and now my account is locked.", "free"),
    ("Dashboard down for everyone", "The site is down with error 503, we cannot work at all.",
     "enterprise"),
    ("Export to CSV?", "Question: how do I export my reports? Feature idea: scheduled export.",
     "standard"),
]


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]
    ticket_id: str


def ticket_payload(ticket_id: str, title: str, description: str, tier: str, *,
                   event: str = "ticket.created", version: int = 1,
                   comment: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"evt-{uuid.uuid4().hex}", "event": event,
        "occurredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ticket": {"ticketId": ticket_id, "version": version, "title": title,
                   "description": description,
                   "requester": {"email": f"customer-{ticket_id.lower()}@example.com",
                                 "tier": tier}}}
    if comment is not None:
        payload["comment"] = {"author": "customer", "body": comment}
    return payload


def signed(payload: dict[str, Any], secret: str, *, at: float | None = None) -> Delivery:
    body = json.dumps(payload).encode("utf-8")
    timestamp = str(int(time.time() if at is None else at))
    return Delivery(body, {"Content-Type": "application/json",
                           SIGNATURE_HEADER: sign(secret.encode("utf-8"), timestamp, body),
                           TIMESTAMP_HEADER: timestamp},
                    str(payload["ticket"]["ticketId"]))


def post(url: str, delivery: Delivery) -> tuple[int, str]:
    request = urllib.request.Request(f"{url.rstrip('/')}/api/helpdesk/webhook",
                                     data=delivery.body, headers=delivery.headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def main(
    url: Annotated[str, typer.Option(help="The Functions host.")] = "http://127.0.0.1:7071",
    secret: Annotated[str, typer.Option(envvar="HELPDESK_WEBHOOK_SECRET")] =
        "local-helpdesk-webhook-secret",
    repeat: Annotated[int, typer.Option(help="Send each delivery this many times.")] = 1,
    forge: Annotated[bool, typer.Option(help="Sign with a wrong secret.")] = False,
) -> None:
    """Post one signed webhook per sample ticket and print each answer."""
    for number, (title, description, tier) in enumerate(TICKETS, start=1):
        delivery = signed(ticket_payload(f"HD-{uuid.uuid4().hex[:6]}-{number}", title,
                                         description, tier),
                          "forged-" + secret if forge else secret)
        for _ in range(repeat):
            status, answer = post(url, delivery)
            typer.echo(f"{delivery.ticket_id} {title!r}: {status} {answer}")


if __name__ == "__main__":
    typer.run(main)
