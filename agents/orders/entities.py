"""The Service Bus entities and connection settings the orders agent uses.

The one place in code that names them; `tests/unit/orders/test_entities.py` checks every name
against `infra/entities/servicebus.json`, the source of truth shared with Bicep and devstack.
"""

from typing import Final

CONNECTION: Final = "ORDERS_SERVICEBUS"
FRAUD_CONNECTION: Final = "FRAUD_SERVICEBUS"
STATE_STORAGE: Final = "STATE_STORAGE"

SAGA_QUEUE: Final = "orders-saga"
INVENTORY_QUEUE: Final = "orders-inventory"
PAYMENTS_QUEUE: Final = "orders-payments"
SHIPPING_QUEUE: Final = "orders-shipping"
QUEUES: Final = (SAGA_QUEUE, INVENTORY_QUEUE, PAYMENTS_QUEUE, SHIPPING_QUEUE)

FRAUD_ALERTS_TOPIC: Final = "fraud-alerts"
FRAUD_ALERTS_SUBSCRIPTION: Final = "orders"
