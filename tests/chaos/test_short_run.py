"""A short seeded chaos run (`make chaos`, small): every fault kind on the real local cloud,
the invariants judged from what the services hold."""

from __future__ import annotations

import pytest

from scripts.chaos import ALL_FAULTS, DEAD_LETTER_REASONS, Options, run_chaos

SHORT = Options(seed=11, orders=30, duration=25.0, faults=ALL_FAULTS, drain_seconds=180.0)
# Broken on main until issue 8.4 lands (the run reports it): the classic binding lets the
# broker dead-letter poison with MaxDeliveryCountExceeded instead of the app's reason.
AWAITING_ISSUE_8 = {DEAD_LETTER_REASONS}


@pytest.mark.timeout(600)
async def test_a_short_run_with_every_fault_kind_keeps_the_invariants() -> None:
    run = await run_chaos(SHORT)
    assert set(run.injected) == set(ALL_FAULTS)
    assert run.drained
    assert {verdict.invariant for verdict in run.verdicts} >= AWAITING_ISSUE_8
    broken = {verdict.invariant: verdict.violations[:5] for verdict in run.verdicts
              if not verdict.held and verdict.invariant not in AWAITING_ISSUE_8}
    assert broken == {}
