"""Events the fraud agent publishes (the agent itself is still to come; the orders agent
already consumes its alerts)."""

from __future__ import annotations

from typing import Any, Final

SOURCE: Final = "/agents/fraud"

# A payment looks fraudulent: on the `fraud-alerts` topic, whose `orders` subscription
# aborts and compensates the order's saga.
ALERT_RAISED: Final = "fraud.alert.raised"
ALERT_RAISED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["orderId"],
    "properties": {"orderId": {"type": "string", "minLength": 1},
                   "reason": {"type": "string"}},
}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {ALERT_RAISED: ALERT_RAISED_SCHEMA}
