"""The saga engine on the in-memory store: each reply and deadline delivered in the order the
test says, on a clock the test moves. What the saga decides is read from its state and from
the commands it sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from agents.backbone import SagaDefinition, SagaEngine, SagaStep, SchemaRegistry, StepKind
from agents.backbone.envelope import Envelope
from agents.backbone.memory import MemoryStore
from agents.backbone.outbox import OutboxRow
from agents.backbone.saga import TIMEOUT, LogEvent, SagaView, reply_for
from agents.backbone.unit_of_work import UnitOfWork, run_unit_of_work

T = TypeVar("T")

DEADLINE = timedelta(seconds=30)
SAGA = SagaDefinition(
    name="fulfilment", source="/tests", reply_to="replies", alert_destination="alerts",
    steps=(
        SagaStep("reserve", "stock.reserve", "inventory", kind=StepKind.COMPENSABLE,
                 compensation="stock.release", timeout=DEADLINE),
        SagaStep("charge", "payment.charge", "payments", kind=StepKind.COMPENSABLE,
                 compensation="payment.refund", timeout=DEADLINE),
        SagaStep("allocate", "stock.allocate", "inventory", kind=StepKind.PIVOT,
                 timeout=DEADLINE),
        SagaStep("ship", "shipping.ship", "shipping", kind=StepKind.RETRIABLE,
                 timeout=DEADLINE),
    ),
    compensation_attempts=3,
)


class Saga:
    """One saga on a `MemoryStore`; every event it emitted is kept in `sent`, in order."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.registry = SchemaRegistry()
        self.engine = SagaEngine(SAGA, registry=self.registry)
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.sent: list[OutboxRow] = []
        self.outcomes: list[str | None] = []
        self._commit(lambda uow: self.engine.start(uow, {}), "start")

    def command(self, command_type: str, attempt: int = 1) -> Envelope:
        return next(row.envelope for row in self.sent if row.envelope.type == command_type
                    and row.envelope.data["attempt"] == attempt)

    def commands(self) -> list[tuple[str, int]]:
        return [(row.envelope.type, row.envelope.data["attempt"]) for row in self.sent
                if row.envelope.type != TIMEOUT]

    def reply(self, command_type: str, attempt: int = 1, *, succeeded: bool = True) -> str:
        command = self.command(command_type, attempt)
        return self.deliver(reply_for(command, succeeded=succeeded, source="/tests/service",
                                      reason=None if succeeded else "refused"))

    def deadline(self, step: str, attempt: int = 1, phase: str = "action") -> str:
        """Move the clock to that attempt's deadline and deliver its timeout message."""
        row = next(row for row in self.sent if row.envelope.type == TIMEOUT
                   and (row.envelope.data["step"], row.envelope.data["phase"],
                        row.envelope.data["attempt"]) == (step, phase, attempt))
        assert row.scheduled_at is not None
        self.clock = max(self.clock, row.scheduled_at)
        return self.deliver(row.envelope)

    def deliver(self, event: Envelope) -> str:
        outcome = self._commit(lambda uow: self.engine.handle(event, uow), event.id)
        assert outcome is not None
        return outcome

    def view(self) -> SagaView:
        found = SagaEngine.view(self.store, "s1")
        assert found is not None
        return found

    def _commit(self, decide: Callable[[UnitOfWork], T], inbox_id: str) -> T | None:
        committed = run_unit_of_work(self.store, "s1", decide, inbox_id=inbox_id,
                                     registry=self.registry, now=lambda: self.clock)
        self.sent += committed.outbox
        return committed.result


def rows_but_inbox(saga: Saga) -> dict[str, dict[str, object]]:
    return {key: row for key, row in saga.store.partition("s1").items()
            if not key.startswith("inbox|")}


def shipping() -> Saga:
    """A saga whose reserve, charge and allocate succeeded: ship attempt 1 is out."""
    saga = Saga()
    for command_type in ("stock.reserve", "payment.charge", "stock.allocate"):
        saga.reply(command_type)
    return saga


def test_a_shipping_reply_after_its_deadline_completes_the_saga_and_refunds_nothing() -> None:
    saga = shipping()
    assert saga.deadline("ship") == "ship in doubt, re-sent"
    assert saga.reply("shipping.ship", attempt=1) == "ship succeeded"
    view = saga.view()
    assert view.status == "completed"
    assert saga.commands() == [("stock.reserve", 1), ("payment.charge", 1),
                               ("stock.allocate", 1), ("shipping.ship", 1),
                               ("shipping.ship", 2)]
    resent = next(r for r in saga.sent if r.envelope.data.get("attempt") == 2)
    assert resent.scheduled_at == saga.clock + SAGA.in_doubt_backoff


def test_a_compensation_reply_arriving_after_the_next_attempt_was_sent_compensates() -> None:
    saga = Saga()
    saga.reply("stock.reserve")
    saga.reply("payment.charge", succeeded=False)  # release attempt 1 goes out
    assert saga.deadline("reserve", 1, "compensation") == "reserve compensation retried"
    assert saga.reply("stock.release", attempt=1) == "reserve compensated"
    view = saga.view()
    assert view.status == "compensated"
    assert view.steps["reserve"]["status"] == "compensated"
    assert saga.deadline("reserve", 2, "compensation") == (
        "ignored: late reserve compensation timeout")


def test_a_step_and_phase_is_decided_once_whatever_arrives_after() -> None:
    saga = shipping()
    saga.deadline("ship")
    saga.reply("shipping.ship", attempt=2)
    before = rows_but_inbox(saga)
    assert saga.reply("shipping.ship", attempt=1) == "ignored: late or repeated ship reply"
    assert saga.reply("shipping.ship", attempt=2, succeeded=False) == (
        "ignored: late or repeated ship reply")
    assert saga.deadline("ship", 2) == "ignored: late ship timeout"
    assert rows_but_inbox(saga) == before  # only the three inbox markers were added
    assert saga.commands()[-1] == ("shipping.ship", 2)


def test_a_failure_for_an_earlier_compensation_attempt_waits_for_the_later_one() -> None:
    saga = Saga()
    saga.reply("stock.reserve")
    saga.reply("payment.charge", succeeded=False)
    saga.deadline("reserve", 1, "compensation")
    assert saga.reply("stock.release", attempt=1, succeeded=False) == (
        "ignored: reserve compensation attempt 1 failed, a later one is out")
    assert saga.commands().count(("stock.release", 3)) == 0
    assert saga.reply("stock.release", attempt=2) == "reserve compensated"


def test_a_pivot_in_doubt_is_asked_again_and_its_refusal_compensates_the_steps_before() -> None:
    saga = Saga()
    saga.reply("stock.reserve")
    saga.reply("payment.charge")
    assert saga.deadline("allocate") == "allocate in doubt, re-sent"
    assert saga.reply("stock.allocate", attempt=2, succeeded=False) == "allocate failed"
    assert saga.reply("payment.refund") == "charge compensated"
    assert saga.reply("stock.release") == "reserve compensated"
    assert saga.view().status == "compensated"


def test_a_late_success_for_a_compensable_step_past_its_deadline_is_only_recorded() -> None:
    saga = Saga()
    saga.reply("stock.reserve")
    assert saga.deadline("charge") == "charge timed out"
    assert saga.reply("payment.charge") == "charge late reply recorded"
    view = saga.view()
    assert (view.status, view.steps["charge"]["status"]) == ("compensating", "compensating")
    assert "charge" not in view.results
    assert view.log[-1].event is LogEvent.LATE_SUCCESS
    assert saga.commands()[-1] == ("payment.refund", 1)
