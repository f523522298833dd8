"""The Service Bus and Event Hubs entities and connection settings the orders agent uses.

The one place in code that names them; `tests/unit/orders/test_entities.py` checks every name
against `infra/entities/`, the source of truth shared with Bicep and devstack.
"""

from typing import Final

CONNECTION: Final = "ORDERS_SERVICEBUS"
FRAUD_CONNECTION: Final = "FRAUD_SERVICEBUS"
FRAUD_EVENTHUBS: Final = "FRAUD_EVENTHUBS"
STATE_STORAGE: Final = "STATE_STORAGE"

SAGA_QUEUE: Final = "orders-saga"
INVENTORY_QUEUE: Final = "orders-inventory"
PAYMENTS_QUEUE: Final = "orders-payments"
SHIPPING_QUEUE: Final = "orders-shipping"
QUEUES: Final = (SAGA_QUEUE, INVENTORY_QUEUE, PAYMENTS_QUEUE, SHIPPING_QUEUE)

# The payment stream the fraud agent scores: the payment gateway publishes every charge here.
PAYMENTS_HUB: Final = "fraud-payments"
FRAUD_ALERTS_TOPIC: Final = "fraud-alerts"
FRAUD_ALERTS_SUBSCRIPTION: Final = "orders"
