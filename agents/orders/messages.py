"""The orders agent's event types, their data schemas, and where each one travels."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Final

from agents.backbone.schemas import SchemaRegistry
from agents.orders import entities
from agents.orders.model import Reply, Step
from agents.orders.simulators import SERVICE_OF_STEP

SOURCE: Final = "/agents/orders"
DEADLINE_TYPE: Final = "orders.saga.step-deadline"
# Raised by the fraud agent on the fraud-alerts topic; the orders subscription receives it.
FRAUD_ALERT_TYPE: Final = "fraud.alert.raised"
SCHEMAS = Path(__file__).with_name("schemas")


def command_type(step: Step) -> str:
    return f"orders.{SERVICE_OF_STEP[step].value}.{step.value.replace('_', '-')}"


def reply_type(reply: Reply) -> str:
    return f"orders.reply.{reply.value}"


STEP_OF_COMMAND_TYPE = {command_type(step): step for step in Step}
REPLY_OF_TYPE = {reply_type(reply): reply for reply in Reply}
QUEUE_OF_SERVICE = {
    "inventory": entities.INVENTORY_QUEUE,
    "payments": entities.PAYMENTS_QUEUE,
    "shipping": entities.SHIPPING_QUEUE,
}


def queue_of(step: Step) -> str:
    return QUEUE_OF_SERVICE[SERVICE_OF_STEP[step].value]


_ID = {"type": "string", "minLength": 1, "maxLength": 100}
COMMAND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orderId", "customerId", "items", "amountCents", "card", "chargeId",
                 "reservationId", "attempt"],
    "properties": {
        "orderId": _ID, "customerId": _ID, "card": _ID, "chargeId": _ID, "reservationId": _ID,
        "amountCents": {"type": "integer", "minimum": 0},
        "attempt": {"type": "integer", "minimum": 1},
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["sku", "quantity", "unit_price_cents"],
            "properties": {"sku": _ID, "quantity": {"type": "integer", "minimum": 1},
                           "unit_price_cents": {"type": "integer", "minimum": 0}}}},
    },
}
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orderId", "attempt"],
    "properties": {"orderId": _ID, "attempt": {"type": "integer", "minimum": 1},
                   "detail": {"type": "string", "maxLength": 1000}},
}
DEADLINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orderId", "step", "sequence"],
    "properties": {"orderId": _ID, "step": {"enum": [step.value for step in Step]},
                   "sequence": {"type": "integer", "minimum": 1}},
}
FRAUD_ALERT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["orderId"],
    "properties": {"orderId": _ID, "reason": {"type": "string"}},
}


@cache
def http_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    return loaded


def register(registry: SchemaRegistry) -> None:
    """Teach the registry every type this agent sends or receives."""
    for step in Step:
        registry.register(command_type(step), COMMAND_SCHEMA)
    for reply in Reply:
        registry.register(reply_type(reply), REPLY_SCHEMA)
    registry.register(DEADLINE_TYPE, DEADLINE_SCHEMA)
    if not registry.knows(FRAUD_ALERT_TYPE):
        registry.register(FRAUD_ALERT_TYPE, FRAUD_ALERT_SCHEMA)
