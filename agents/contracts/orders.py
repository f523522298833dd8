"""Events the orders agent publishes for other agents."""

from __future__ import annotations

from typing import Any, Final

# Where a card is used (the point of sale), when the order says: the fraud agent's
# `impossible_travel` compares it with the card's previous located payment. The same schema
# is the optional `location` of POST /api/orders (agents/orders/schemas/place-order.json).
LOCATION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["country", "lat", "lon"],
    "additionalProperties": False,
    "properties": {"country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                   "lat": {"type": "number", "minimum": -90, "maximum": 90},
                   "lon": {"type": "number", "minimum": -180, "maximum": 180}},
}

# Every charge the payment gateway makes, on the payment stream the fraud agent scores
# (Event Hubs `fraud-payments`, partition key = card).
PAYMENT_CHARGED: Final = "orders.payment.charged"
PAYMENT_CHARGED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["orderId", "chargeId", "customerId", "card", "amountCents"],
    "properties": {"orderId": {"type": "string"}, "chargeId": {"type": "string"},
                   "customerId": {"type": "string"}, "card": {"type": "string"},
                   "amountCents": {"type": "integer", "minimum": 0},
                   "location": LOCATION_SCHEMA},
}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {PAYMENT_CHARGED: PAYMENT_CHARGED_SCHEMA}
