"""Shared contracts: each event type is owned by the agent module that publishes it."""

from __future__ import annotations

from types import ModuleType

import pytest
from jsonschema import Draft202012Validator

from agents.backbone import Envelope, InvalidEvent, SchemaRegistry
from agents.contracts import fraud, orders

PUBLISHERS = [orders, fraud]


@pytest.mark.parametrize("module", PUBLISHERS, ids=lambda m: m.__name__)
def test_every_type_is_named_for_the_agent_whose_module_defines_it(module: ModuleType) -> None:
    publisher = module.__name__.rsplit(".", 1)[-1]
    assert module.SCHEMAS
    assert all(event_type.startswith(f"{publisher}.") for event_type in module.SCHEMAS)


@pytest.mark.parametrize("module", PUBLISHERS, ids=lambda m: m.__name__)
def test_every_schema_is_a_valid_json_schema(module: ModuleType) -> None:
    for schema in module.SCHEMAS.values():
        Draft202012Validator.check_schema(schema)


def test_no_type_has_two_owners() -> None:
    owned = [event_type for module in PUBLISHERS for event_type in module.SCHEMAS]
    assert len(owned) == len(set(owned))


def test_a_consumer_registry_rejects_a_fraud_alert_without_an_order() -> None:
    schemas = SchemaRegistry(fraud.SCHEMAS)
    alert = Envelope.new(fraud.ALERT_RAISED, {"reason": "velocity"}, source=fraud.SOURCE)
    with pytest.raises(InvalidEvent, match="orderId"):
        schemas.validate(alert)
