"""A saga definition declares each step's kind, in the order the standard vocabulary allows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.backbone import SagaDefinition, SagaStep, StepKind
from agents.orders.model import order_saga


def _saga(*steps: SagaStep) -> SagaDefinition:
    return SagaDefinition(name="s", source="/tests", reply_to="r", alert_destination="a",
                          steps=steps)


def test_compensable_steps_then_one_pivot_then_retriable_steps_is_a_valid_saga() -> None:
    saga = _saga(SagaStep("a", "x.a", "q", kind=StepKind.COMPENSABLE, compensation="x.undo"),
                 SagaStep("b", "x.b", "q", kind=StepKind.PIVOT),
                 SagaStep("c", "x.c", "q", kind=StepKind.RETRIABLE))
    assert [step.kind for step in saga.steps] == list(StepKind)


@pytest.mark.parametrize("kinds", [
    (StepKind.PIVOT, StepKind.COMPENSABLE),
    (StepKind.RETRIABLE, StepKind.PIVOT),
    (StepKind.PIVOT, StepKind.PIVOT),
], ids=["compensable-after-pivot", "pivot-after-retriable", "two-pivots"])
def test_steps_out_of_the_kinds_order_are_refused(kinds: tuple[StepKind, ...]) -> None:
    with pytest.raises(ValueError, match="compensable, then at most one pivot"):
        _saga(*(SagaStep(f"s{n}", f"x.{n}", "q", kind=kind) for n, kind in enumerate(kinds)))


@pytest.mark.parametrize("kind", [StepKind.PIVOT, StepKind.RETRIABLE])
def test_a_step_past_the_point_of_no_return_cannot_name_a_compensation(kind: StepKind) -> None:
    with pytest.raises(ValueError, match="never compensated"):
        SagaStep("ship", "x.ship", "q", kind=kind, compensation="x.recall")


def test_the_order_saga_allocates_as_its_pivot_and_ships_as_retriable() -> None:
    saga = order_saga(step_timeout=timedelta(seconds=5))
    assert {step.name: step.kind for step in saga.steps} == {
        "reserve_stock": StepKind.COMPENSABLE, "charge_payment": StepKind.COMPENSABLE,
        "allocate_stock": StepKind.PIVOT, "ship_order": StepKind.RETRIABLE}
