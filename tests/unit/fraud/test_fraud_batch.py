"""The batch unit of work on the in-memory store: a batch costs a handful of transactions,
a re-read batch has no second effect, poison is parked and the rest is scored."""

from __future__ import annotations

import pytest

from agents.backbone.breaker import BreakerOptions, BreakerState, CircuitBreaker
from agents.backbone.errors import StorageUnavailable
from agents.backbone.memory import MemoryStore
from agents.backbone.tables import table_key
from agents.fraud import entities
from agents.fraud.handlers import MARK_ROW, Batch, RawEvent, park_batch, score_batch
from agents.reasoning import ReasonerUnavailable
from tests.unit.fraud.support import (
    RecordingPublisher,
    ScriptedModel,
    agent,
    charge,
    counted_store,
)

PARIS = {"country": "FR", "lat": 48.86, "lon": 2.35}
SYDNEY = {"country": "AU", "lat": -33.87, "lon": 151.21}


def burst(start: int = 0, count: int = 6) -> Batch:
    """`count` payments of one card within seconds: the sixth trips `velocity`."""
    return Batch("0", [charge(n) for n in range(start, start + count)])


def spread(start: int, count: int) -> Batch:
    """`count` payments of distinct cards (nothing fires)."""
    return Batch("0", [charge(n, card=f"card-{n}") for n in range(start, start + count)])


def mark(store: MemoryStore, partition: str = "0") -> int:
    return int(store.partition(table_key(partition))[MARK_ROW]["Sequence"])


def test_a_batch_of_100_events_costs_a_handful_of_storage_requests() -> None:
    store, counter = counted_store()
    fraud = agent(store, RecordingPublisher())
    cold = score_batch(fraud, spread(0, 100))
    cold_requests = counter.total
    warm = score_batch(fraud, spread(100, 100))
    assert (cold.transactions, warm.transactions) == (2, 2)  # 100 cards + the mark > 100 rows
    assert cold_requests == 4  # mark read, card query, 2 transactions
    assert counter.total - cold_requests == 2  # the cache is valid: no read at all
    assert mark(store) == 199


def test_a_velocity_burst_raises_one_alert_for_the_order_that_tripped_it() -> None:
    publisher, model = RecordingPublisher(), ScriptedModel()
    result = score_batch(agent(MemoryStore(), publisher, model=model), burst())
    [alert] = publisher.alerts
    assert alert.data["orderId"] == "o-5"
    assert alert.data["reasons"] == ["velocity"]
    assert alert.data["explainedBy"] == "model"
    assert alert.data["rationale"] == "Six payments in a minute."
    assert model.calls == 1
    assert [v.alert for v in result.verdicts] == [False] * 5 + [True]


def test_the_explanation_is_recorded_with_the_alert_in_the_same_partition() -> None:
    store = MemoryStore()
    score_batch(agent(store, RecordingPublisher(), model=ScriptedModel()), burst())
    rows = store.partition("0")
    assert sum(key.startswith("answer|") for key in rows) == 1
    assert sum(key.startswith("outbox|") for key in rows) == 1


def test_a_batch_read_again_has_no_second_effect() -> None:
    store, publisher, model = MemoryStore(), RecordingPublisher(), ScriptedModel()
    fraud = agent(store, publisher, model=model)
    score_batch(fraud, burst())
    before = store.rows()
    again = score_batch(fraud, burst())
    assert again.already_applied == 6 and again.verdicts == []
    assert len(publisher.alerts) == 1 and model.calls == 1
    assert decisions(store.rows()) == decisions(before)


def decisions(rows: dict[tuple[str, str], dict[str, object]]) -> dict[str, object]:
    """Card windows, recorded answers and the alerts' ids (the relay marks them later)."""
    return {key: row if not key.startswith("outbox|") else row["EventType"]
            for (_, key), row in rows.items() if key != MARK_ROW}


def test_after_a_crash_a_new_instance_rereading_the_batch_raises_no_second_alert() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    score_batch(agent(store, publisher), burst())
    first_alert = publisher.alerts[0].id
    restarted = agent(store, publisher)  # nothing cached: it reads the mark
    result = score_batch(restarted, Batch("0", [*burst().events, charge(6)]))
    assert result.already_applied == 6
    # The unmarked alert is sent again under its own id (the topic's duplicate detection
    # drops the copy); only the new seventh payment raises a new one.
    assert [alert.id for alert in publisher.alerts[:2]] == [first_alert] * 2
    assert [row.envelope.data["orderId"] for row in result.alerts] == ["o-6"]


def test_an_alert_committed_but_not_published_goes_out_when_the_batch_is_read_again() -> None:
    store = MemoryStore()

    class Down(RecordingPublisher):
        def publish(self, rows: object) -> None:
            raise StorageUnavailable("broker down")

    with pytest.raises(StorageUnavailable):
        score_batch(agent(store, Down()), burst())
    publisher = RecordingPublisher()
    score_batch(agent(store, publisher), burst())
    assert [alert.data["orderId"] for alert in publisher.alerts] == ["o-5"]


def test_when_the_model_fails_the_verdict_is_rules_only_with_the_reason() -> None:
    publisher = RecordingPublisher()
    model = ScriptedModel(ReasonerUnavailable("timeout"))
    score_batch(agent(MemoryStore(), publisher, model=model), burst())
    [alert] = publisher.alerts
    assert alert.data["explainedBy"] == "rules"
    assert alert.data["rationale"].startswith("rules only (ReasonerUnavailable: timeout)")
    assert alert.data["recommendedAction"] == "block"


def test_without_a_model_the_verdict_says_no_model_is_configured() -> None:
    publisher = RecordingPublisher()
    score_batch(agent(MemoryStore(), publisher), burst())
    assert publisher.alerts[0].data["rationale"].startswith("rules only (no model configured)")


def test_while_the_breaker_is_open_the_verdict_is_rules_only_and_the_model_is_not_called(
        ) -> None:
    publisher, model = RecordingPublisher(), ScriptedModel(ReasonerUnavailable("503"))
    breaker = CircuitBreaker("llm", options=BreakerOptions(
        failure_ratio=0.5, minimum_throughput=2, break_duration=30), clock=lambda: 1000.0)
    fraud = agent(MemoryStore(), publisher, model=model, breaker=breaker)
    for first in (0, 6, 12):  # three cards, one high-risk payment each
        score_batch(fraud, Batch("0", [charge(n, card=f"card-{first}")
                                       for n in range(first, first + 6)]))
    assert model.calls == 2 and breaker.state is BreakerState.OPEN
    rationales = [alert.data["rationale"] for alert in publisher.alerts]
    assert rationales[2].startswith("rules only (ReasonerOpen: ")
    assert "is open" in rationales[2]


def test_a_poison_event_is_parked_with_its_position_and_the_rest_is_scored() -> None:
    publisher = RecordingPublisher()
    events = [*burst().events[:3], RawEvent(b"not json", {}, 3, "300"),
              *(charge(n) for n in range(4, 7))]
    result = score_batch(agent(MemoryStore(), publisher), Batch("2", events))
    [parked] = publisher.to(entities.POISON_QUEUE)
    assert parked.data["partitionId"] == "2" and parked.data["sequenceNumber"] == 3
    assert parked.data["offset"] == "300" and parked.data["reason"] == "InvalidEncoding"
    assert parked.data["consumerGroup"] == entities.CONSUMER_GROUP
    assert len(result.verdicts) == 6 and len(publisher.alerts) == 1


def test_a_poison_event_already_behind_the_mark_is_not_parked_again() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    batch = Batch("0", [charge(0), RawEvent(b"{}", {}, 1, "100"), charge(2)])
    score_batch(agent(store, publisher), batch)
    score_batch(agent(store, publisher), batch)
    assert len(publisher.to(entities.POISON_QUEUE)) == 1


def test_a_payment_published_twice_is_counted_once() -> None:
    publisher = RecordingPublisher()
    copies = [charge(n) for n in range(5)] + [charge(5, event_id="pay-4", seconds=4)]
    result = score_batch(agent(MemoryStore(), publisher), Batch("0", copies))
    assert result.already_applied == 1 and publisher.alerts == []


def test_a_reader_whose_partition_was_written_by_another_reloads_and_counts_once() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    first, second = agent(store, publisher), agent(store, publisher)
    score_batch(first, burst(0, 3))       # first owns the partition
    score_batch(second, burst(3, 2))      # the lease moved: second reads, writes 3..4
    result = score_batch(first, burst(3, 3))  # first's cache is stale: refused, reloaded
    assert result.already_applied == 2 and len(result.verdicts) == 1
    assert [alert.data["orderId"] for alert in publisher.alerts] == ["o-5"]
    assert mark(store) == 5


def test_events_are_scored_in_sequence_order_whatever_order_they_arrive_in() -> None:
    publisher = RecordingPublisher()
    trip = [charge(1, seconds=3600, location=SYDNEY), charge(0, seconds=0, location=PARIS)]
    result = score_batch(agent(MemoryStore(), publisher), Batch("0", trip))
    assert [v.payment.sequence_number for v in result.verdicts] == [0, 1]
    assert publisher.alerts[0].data["reasons"] == ["impossible_travel"]


def test_retries_exhausted_parks_every_event_above_the_mark() -> None:
    store, publisher = MemoryStore(), RecordingPublisher()
    fraud = agent(store, publisher)
    score_batch(fraud, burst(0, 2))
    parked = park_batch(fraud, burst(0, 4), StorageUnavailable("table down"))
    assert [p.data["sequenceNumber"] for p in parked] == [2, 3]
    assert all(p.data["reason"] == "StorageUnavailable" for p in parked)
    assert len(publisher.to(entities.POISON_QUEUE)) == 2
