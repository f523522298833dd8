"""The trigger's failure rule: a failed batch raises while retries remain (the host retries
it), and on the last retry it is parked instead, since the host checkpoints past it anyway."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from azure.functions import meta

from agents.backbone.errors import ConfigurationError, StorageUnavailable
from agents.backbone.memory import MemoryStore
from agents.backbone.publishers import Publisher
from agents.fraud import entities
from agents.fraud.blueprint import batch_of, blueprint, on_payments
from agents.fraud.handlers import FraudAgent, RawEvent
from tests.unit.fraud.support import RecordingPublisher, agent, charge


class Context:
    """What `on_payments` reads of `func.Context`: the retry counts."""

    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self.retry_context = type("Retry", (), {"retry_count": retry_count,
                                                "max_retry_count": max_retry_count})()


def trigger_events(*events: RawEvent, partition: str = "1") -> list[func.EventHubEvent]:
    """As the host builds them for cardinality many: shared metadata arrays."""
    shared = {"PartitionContext": meta.Datum(json.dumps({"PartitionId": partition}), "json"),
              "PropertiesArray": meta.Datum(json.dumps([dict(e.properties) for e in events]),
                                            "json")}
    return [func.EventHubEvent(body=e.body, trigger_metadata=shared,
                               sequence_number=e.sequence_number, offset=e.offset)
            for e in events]


class DownStore(MemoryStore):
    def submit(self, operations: Any) -> list[str]:
        raise StorageUnavailable("table down")


def test_the_batch_keeps_its_partition_positions_and_properties() -> None:
    events = [charge(0), RawEvent(charge(1).body, {"gateway": "sim"}, 1, "100")]
    batch = batch_of(trigger_events(*events, partition="3"))
    assert batch.partition_id == "3"
    assert [(e.sequence_number, e.offset, dict(e.properties)) for e in batch.events] == [
        (0, "0", {}), (1, "100", {"gateway": "sim"})]


def test_a_failed_batch_raises_while_retries_remain() -> None:
    publisher = RecordingPublisher()
    with pytest.raises(StorageUnavailable):
        on_payments(trigger_events(charge(0)), Context(2, 5),  # type: ignore[arg-type]
                    lambda: agent(DownStore(), publisher), lambda: publisher)
    assert publisher.to(entities.POISON_QUEUE) == []


def test_on_the_last_retry_the_batch_is_parked_with_the_error() -> None:
    publisher = RecordingPublisher()
    on_payments(trigger_events(charge(0), charge(1)), Context(5, 5),  # type: ignore[arg-type]
                lambda: agent(DownStore(), publisher), lambda: RecordingPublisher())
    parked = publisher.to(entities.POISON_QUEUE)
    assert [p.data["sequenceNumber"] for p in parked] == [0, 1]
    assert {p.data["reason"] for p in parked} == {"StorageUnavailable"}
    assert {p.data["partitionId"] for p in parked} == {"1"}


def scoring_function(compose: Callable[[], FraudAgent], parking: Callable[[], Publisher]
                     ) -> Callable[[list[func.EventHubEvent], Context], None]:
    """`fraud_score_payments` as the Blueprint registers it."""
    app = func.FunctionApp()
    app.register_functions(blueprint(compose, parking))
    [function] = [f for f in app.get_functions()
                  if f.get_function_name() == "fraud_score_payments"]
    return function.get_user_function()  # type: ignore[no-any-return]


def broken() -> FraudAgent:
    raise ConfigurationError("FRAUD_VELOCITY_COUNT='five' is not a int")


def test_a_batch_whose_agent_cannot_be_composed_raises_while_retries_remain() -> None:
    publisher = RecordingPublisher()
    with pytest.raises(ConfigurationError):
        scoring_function(broken, lambda: publisher)(trigger_events(charge(0)), Context(4, 5))
    assert publisher.to(entities.POISON_QUEUE) == []


def test_a_batch_whose_agent_cannot_be_composed_is_parked_on_the_last_retry() -> None:
    publisher = RecordingPublisher()
    scoring_function(broken, lambda: publisher)(trigger_events(charge(0), charge(1)),
                                                Context(5, 5))
    parked = publisher.to(entities.POISON_QUEUE)
    assert [p.data["sequenceNumber"] for p in parked] == [0, 1]
    assert {p.data["reason"] for p in parked} == {"ConfigurationError"}
    assert "FRAUD_VELOCITY_COUNT" in parked[0].data["description"]
