"""Events the orders agent publishes for other agents."""

from __future__ import annotations

from typing import Any, Final

# Every charge the payment gateway makes, on the payment stream the fraud agent scores
# (Event Hubs `fraud-payments`, partition key = card).
PAYMENT_CHARGED: Final = "orders.payment.charged"
PAYMENT_CHARGED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["orderId", "chargeId", "customerId", "card", "amountCents"],
    "properties": {"orderId": {"type": "string"}, "chargeId": {"type": "string"},
                   "customerId": {"type": "string"}, "card": {"type": "string"},
                   "amountCents": {"type": "integer", "minimum": 0}},
}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {PAYMENT_CHARGED: PAYMENT_CHARGED_SCHEMA}
