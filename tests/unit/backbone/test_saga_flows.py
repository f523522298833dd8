"""The saga engine with scripted participants, on the in-memory store, every message delivered
by the test on its clock: every saga ends terminal. (Each reply and deadline in a stated
order, one at a time: `test_saga_engine.py`.)"""

from __future__ import annotations

import itertools
import json

import pytest

from agents.backbone import (
    Envelope,
    InvalidEvent,
    MessageProcessor,
    OutboxRelay,
    SchemaRegistry,
    Settlement,
    reply_for,
)
from agents.backbone.memory import MemoryStore
from agents.backbone.saga import LogEvent, Phase
from agents.backbone.store import Operation, Write
from tests.integration.backbone.counter import register_counter_events
from tests.integration.backbone.deliveries import Deliveries
from tests.unit.backbone.saga_world import (
    ALERTS,
    FULFILMENT,
    REPLIES,
    STEP_TIMEOUT,
    World,
)

OK = "ok"


def make_processor(deliveries: Deliveries, schemas: SchemaRegistry) -> MessageProcessor:
    """A processor on a fresh `MemoryStore`, publishing into `deliveries` on their clock."""
    store = MemoryStore()
    relay = OutboxRelay(store, deliveries, now=deliveries.now)
    return MessageProcessor(store, relay, registry=schemas, now=deliveries.now)


@pytest.fixture
def schemas() -> SchemaRegistry:
    chosen = SchemaRegistry()
    register_counter_events(chosen)
    return chosen


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries(max_deliveries=5)


@pytest.fixture
def processor(deliveries: Deliveries, schemas: SchemaRegistry) -> MessageProcessor:
    return make_processor(deliveries, schemas)


@pytest.fixture
def world(processor, deliveries, schemas) -> World:
    return World(processor, deliveries, schemas)


def test_happy_path_runs_every_step_in_order_and_completes(world):
    world.start("s1", amount=42)
    world.run()
    view = world.view("s1")
    assert view.status == "completed"
    assert world.journal == [("stock.reserve", OK), ("payment.charge", OK), ("shipping.ship", OK)]
    assert {name: step["status"] for name, step in view.steps.items()} == {
        "reserve": "succeeded", "charge": "succeeded", "ship": "succeeded"}
    assert view.results["charge"] == {"by": "payment.charge"}
    charge = next(c for c in world.commands if c.type == "payment.charge")
    assert charge.data["payload"] == {"amount": 42}
    assert {c.correlationid for c in world.commands} == {world.commands[0].correlationid}


@pytest.mark.parametrize(("failing", "step", "expected"), [
    ("stock.reserve", "reserve", [("stock.reserve", "fail")]),
    ("payment.charge", "charge", [("stock.reserve", OK), ("payment.charge", "fail"),
                                  ("stock.release", OK)]),
    ("shipping.ship", "ship", [("stock.reserve", OK), ("payment.charge", OK),
                               ("shipping.ship", "fail"), ("payment.refund", OK),
                               ("stock.release", OK)]),
], ids=["step1", "step2", "step3"])
def test_failure_at_step_n_compensates_completed_steps_in_reverse_order(
    processor, deliveries, schemas, failing, step, expected
):
    world = World(processor, deliveries, schemas, {failing: ["fail"]})
    world.start("s1")
    world.run()
    view = world.view("s1")
    assert view.status == "compensated"
    assert world.journal == expected
    assert view.failure == {"step": step, "reason": f"{failing} refused"}


def test_repeated_and_late_replies_change_nothing(world, deliveries, processor):
    world.start("s1")
    world.run()
    before = world.view("s1")
    reserve = next(c for c in world.commands if c.type == "stock.reserve")
    late_failure = reply_for(reserve, succeeded=False, source="/tests/participant",
                             reason="changed my mind")
    repeat = reply_for(reserve, succeeded=True, source="/tests/participant")
    for reply in (late_failure, repeat):
        deliveries.send(REPLIES, reply.to_json().encode(), reply.id)
    settled = world.run()
    assert [d.settlement for d in settled] == [Settlement.COMPLETED, Settlement.COMPLETED]
    assert world.outcomes[-2:] == ["ignored: late or repeated reserve reply"] * 2
    assert world.view("s1") == before


def test_the_same_reply_delivered_again_is_recognised_by_the_inbox(world, processor):
    world.start("s1")
    world.run()
    reserve = next(c for c in world.commands if c.type == "stock.reserve")
    replay = reply_for(reserve, succeeded=True, source="/tests/participant")
    first = processor.handle(replay, world.engine.handle)
    again = processor.handle(replay, world.engine.handle)
    assert (first.duplicate, again.duplicate) == (False, True)


def test_a_step_that_never_replies_times_out_and_the_saga_compensates(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas, {"payment.charge": ["silent"]})
    world.start("s1")
    world.run()
    assert world.view("s1").status == "running"
    deliveries.advance(STEP_TIMEOUT * 2)
    world.run()
    view = world.view("s1")
    assert view.status == "compensated"
    assert view.failure == {"step": "charge", "reason": "timeout"}
    # the timed-out charge may have happened, so it is refunded too, before the release
    assert world.journal == [("stock.reserve", OK), ("payment.charge", "silent"),
                             ("payment.refund", OK), ("stock.release", OK)]


def test_a_timeout_arriving_after_its_step_completed_is_ignored(world, deliveries):
    world.start("s1")
    world.run()
    before = world.view("s1")
    deliveries.advance(STEP_TIMEOUT * 2)
    settled = world.run()
    assert len(settled) == 3  # one scheduled timeout per step, each settled normally
    assert world.outcomes[-3:] == [f"ignored: late {s} timeout" for s in ("reserve", "charge",
                                                                          "ship")]
    assert world.view("s1") == before


def test_a_shipping_reply_after_its_deadline_completes_the_saga_and_refunds_nothing(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas, {"shipping.ship": ["late"]})
    world.start("s1")
    world.run_until_settled()
    view = world.view("s1")
    assert view.status == "completed"
    kinds = [kind for kind, _ in world.journal]
    # in doubt at its deadline, the same command went again; the first reply decided
    assert kinds == ["stock.reserve", "payment.charge", "shipping.ship", "shipping.ship"]
    assert view.steps["ship"]["status"] == "succeeded"
    assert view.failure is None
    # the re-sent attempt's own reply came later still, for a step already decided
    assert world.outcomes[-1] == "ignored: late or repeated ship reply"


def test_a_compensation_reply_arriving_after_the_next_attempt_was_sent_compensates(
    processor, deliveries, schemas
):
    # refund attempt 1 is done but answers after its deadline; attempt 2 never answers
    world = World(processor, deliveries, schemas,
                  {"shipping.ship": ["fail"], "payment.refund": ["late", "silent"]})
    world.start("s1")
    world.run_until_settled()
    view = world.view("s1")
    assert view.status == "compensated"
    assert view.steps["charge"]["status"] == "compensated"
    assert [kind for kind, _ in world.journal].count("payment.refund") == 2
    assert world.journal[-1] == ("stock.release", OK)
    assert deliveries.dead_letters.get(REPLIES, []) == [] and deliveries.pending(ALERTS) == []


def test_a_late_success_for_a_step_being_compensated_is_recorded_and_changes_nothing(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas, {"payment.charge": ["late"]})
    world.start("s1")
    world.run_until_settled()
    view = world.view("s1")
    assert view.status == "compensated"
    assert view.failure == {"step": "charge", "reason": "timeout"}
    assert view.steps["charge"]["status"] == "compensated"
    assert "charge" not in view.results
    assert world.journal == [("stock.reserve", OK), ("payment.charge", "late"),
                             ("payment.refund", OK), ("stock.release", OK)]
    late = view.log[-1]
    assert (late.step, late.phase, late.event, late.attempt) == (
        "charge", Phase.ACTION, LogEvent.LATE_SUCCESS, 1)


def test_a_retriable_step_never_answering_is_re_sent_with_growing_delays_and_alerts_once(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas, {"shipping.ship": ["silent"]})
    world.start("s1")
    shipped_at = []
    for _ in range(100):  # one due instant at a time, until one attempt past the alert
        world.run()
        ships = [c for c in world.commands if c.type == "shipping.ship"]
        shipped_at += [deliveries.now()] * (len(ships) - len(shipped_at))
        if len(ships) > FULFILMENT.in_doubt_alert_after:
            break
        deliveries.advance_to_next_scheduled()
    assert [c.data["attempt"] for c in ships] == list(range(1, len(ships) + 1))
    gaps = [later - earlier for earlier, later in itertools.pairwise(shipped_at)]
    assert gaps == sorted(gaps) and gaps[0] > STEP_TIMEOUT and gaps[-1] > gaps[0]
    view = world.view("s1")
    assert (view.status, view.steps["ship"]["status"]) == ("running", "in_doubt")
    assert "payment.refund" not in [kind for kind, _ in world.journal]
    [alert] = deliveries.pending(ALERTS)
    assert json.loads(alert.body)["data"]["attempts"] == FULFILMENT.in_doubt_alert_after


def test_an_abort_with_a_retriable_step_in_flight_is_recorded_and_refused(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas, {"shipping.ship": ["late"]})
    world.start("s1")
    world.run()
    fraud = Envelope.new("counter.increment", {"by": 1}, source="/agents/fraud", subject="s1")
    aborted = processor.run("s1", lambda uow: world.engine.abort(uow, "fraud", cause=fraud),
                            inbox_id=fraud.id)
    assert aborted.result is False
    world.run_until_settled()
    view = world.view("s1")
    assert view.status == "completed"
    assert "payment.refund" not in [kind for kind, _ in world.journal]
    assert [(e.step, e.reason) for e in view.log if e.event is LogEvent.ABORT_REFUSED] == [
        ("ship", "fraud")]


def test_a_failing_compensation_is_retried_until_it_succeeds(processor, deliveries, schemas):
    world = World(processor, deliveries, schemas,
                  {"shipping.ship": ["fail"], "payment.refund": ["fail", "fail", OK]})
    world.start("s1")
    world.run_until_settled()
    view = world.view("s1")
    assert view.status == "compensated"
    assert [kind for kind, _ in world.journal].count("payment.refund") == 3
    assert view.steps["charge"]["compensationAttempt"] == 3
    assert deliveries.dead_letters.get(REPLIES, []) == []


def test_a_compensation_failing_past_its_budget_is_dead_lettered_with_an_alert(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas,
                  {"shipping.ship": ["fail"], "payment.refund": ["fail"]})
    world.start("s1")
    world.run_until_settled()
    view = world.view("s1")
    assert view.status == "failed"
    assert view.steps["charge"]["status"] == "compensation_failed"
    assert view.steps["reserve"]["status"] == "compensated"  # the rest still compensated
    assert [kind for kind, _ in world.journal].count("payment.refund") == 3
    [dead] = deliveries.dead_letters[REPLIES]
    assert dead.dead_letter_reason == "CompensationExhausted"
    assert "charge" in (dead.dead_letter_error_description or "")
    [alert] = deliveries.pending(ALERTS)
    body = json.loads(alert.body)
    assert body["type"] == "backbone.saga.alert"
    assert body["data"] == {"sagaId": "s1", "saga": "fulfilment", "step": "charge",
                            "reason": "payment.refund refused", "attempts": 3}


def test_every_saga_ends_in_a_terminal_state_under_triple_delivery(schemas):
    deliveries = Deliveries(copies=3)
    processor = make_processor(deliveries, schemas)
    world = World(processor, deliveries, schemas, {"shipping.ship": ["fail"]})
    for n in range(5):
        world.start(f"s{n}")
    world.run_until_settled()
    assert {world.view(f"s{n}").status for n in range(5)} == {"compensated"}
    published = deliveries.published
    # Handlers ran for the extra deliveries too, but the inbox rejected their transactions,
    # so each command and reply was committed and published once.
    assert len([c for c in world.commands if c.type == "payment.refund"]) == 15
    assert [r.envelope.type for r in published].count("payment.refund") == 5
    compensation_replies = [r for r in published if r.envelope.type == "backbone.saga.reply"
                            and r.envelope.data["phase"] == "compensation"]
    assert len(compensation_replies) == 10  # refund + release per saga


def test_an_event_the_saga_does_not_expect_is_poison(world, processor):
    world.start("s1")
    stray = Envelope.new("counter.increment", {"by": 1}, source="/tests", subject="s1")
    with pytest.raises(InvalidEvent) as raised:
        processor.handle(stray, world.engine.handle)
    assert raised.value.reason == "UnexpectedEventType"


def test_a_saga_aborted_from_outside_compensates_the_step_in_flight_too(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas, {"payment.charge": ["silent"]})
    world.start("s1")
    world.run()
    fraud = Envelope.new("counter.increment", {"by": 1}, source="/agents/fraud", subject="s1")
    processor.run("s1", lambda uow: world.engine.abort(uow, "fraud alert", cause=fraud),
                  inbox_id=fraud.id)
    world.run()
    view = world.view("s1")
    assert view.status == "compensated"
    assert view.failure == {"step": "charge", "reason": "fraud alert"}
    assert world.journal[-2:] == [("payment.refund", OK), ("stock.release", OK)]


def test_the_view_log_carries_each_entry_time_in_order(world):
    world.start("s1", amount=42)
    world.run()
    log = world.view("s1").log
    times = [entry.at for entry in log]
    assert log[0].event is LogEvent.STARTED
    assert all(at.tzinfo is not None for at in times)
    assert times == sorted(times)


def test_the_step_log_records_structured_events_with_attempts(world):
    world.start("s1")
    world.run()
    log = world.view("s1").log
    assert [(e.step, e.phase, e.event, e.attempt) for e in log] == [
        ("-", Phase.SAGA, LogEvent.STARTED, None),
        ("reserve", Phase.ACTION, LogEvent.SENT, 1),
        ("reserve", Phase.ACTION, LogEvent.SUCCEEDED, 1),
        ("charge", Phase.ACTION, LogEvent.SENT, 1),
        ("charge", Phase.ACTION, LogEvent.SUCCEEDED, 1),
        ("ship", Phase.ACTION, LogEvent.SENT, 1),
        ("ship", Phase.ACTION, LogEvent.SUCCEEDED, 1),
        ("-", Phase.SAGA, LogEvent.COMPLETED, None),
    ]


def test_a_failed_compensation_attempt_is_logged_with_its_attempt_and_reason(
    processor, deliveries, schemas
):
    world = World(processor, deliveries, schemas,
                  {"shipping.ship": ["fail"], "payment.refund": ["fail", OK]})
    world.start("s1")
    world.run_until_settled()
    refunds = [(e.event, e.attempt, e.reason) for e in world.view("s1").log
               if (e.step, e.phase) == ("charge", Phase.COMPENSATION)]
    assert refunds == [(LogEvent.SENT, 1, None),
                       (LogEvent.FAILED, 1, "payment.refund refused"),
                       (LogEvent.SENT, 2, None),
                       (LogEvent.COMPENSATED, 2, None)]


def test_a_log_row_written_as_prose_before_structured_entries_still_reads(world, processor):
    world.start("s1")
    processor.store.submit([Operation(Write.INSERT, {
        "PartitionKey": "s1", "RowKey": "log|000000", "Step": "reserve", "Phase": "action",
        "What": "sent attempt 1"})])
    first = world.view("s1").log[0]
    assert (first.event, first.reason, first.at) == (LogEvent.NOTE, "sent attempt 1", None)
