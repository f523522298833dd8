"""Events the fraud agent (agents/fraud) publishes; the orders agent consumes its alerts."""

from __future__ import annotations

from typing import Any, Final

SOURCE: Final = "/agents/fraud"

# A payment looks fraudulent: on the `fraud-alerts` topic, whose `orders` subscription
# aborts and compensates the order's saga. Only `orderId` is required (the saga needs no
# more); the rest says why: the rules that fired, the score, and the explanation
# (`explainedBy`: "model", or "rules" when the Reasoner was not available).
ALERT_RAISED: Final = "fraud.alert.raised"
ALERT_RAISED_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["orderId"],
    "properties": {"orderId": {"type": "string", "minLength": 1},
                   "reason": {"type": "string"},
                   "score": {"type": "integer", "minimum": 0, "maximum": 100},
                   "reasons": {"type": "array", "items": {"type": "string"}},
                   "riskLevel": {"enum": ["low", "medium", "high"]},
                   "rationale": {"type": "string"},
                   "recommendedAction": {"enum": ["block", "review", "allow"]},
                   "explainedBy": {"enum": ["model", "rules"]}},
}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {ALERT_RAISED: ALERT_RAISED_SCHEMA}
