"""The Event Hubs and Service Bus entities and connection settings the fraud agent uses.

The one place in code that names them; `tests/unit/fraud/test_entities.py` checks every name
against `infra/entities/`, the source of truth shared with Bicep and devstack.
"""

from typing import Final

EVENTHUBS_CONNECTION: Final = "FRAUD_EVENTHUBS"
SERVICEBUS_CONNECTION: Final = "FRAUD_SERVICEBUS"
STATE_STORAGE: Final = "STATE_STORAGE"

# The payment stream (partition key = card) and this agent's own consumer group on it.
PAYMENTS_HUB: Final = "fraud-payments"
CONSUMER_GROUP: Final = "fraud-scoring"
# Alerts (the orders saga's `orders` subscription compensates) and parked poison events.
ALERTS_TOPIC: Final = "fraud-alerts"
POISON_QUEUE: Final = "fraud-poison-events"
