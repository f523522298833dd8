"""Leaving a relay writes its remembered marks. (Sweep and retention are in the store
conformance suite, tests/conformance/unit_of_work.py, on Azurite and in memory.)"""

from __future__ import annotations

from tests.integration.backbone.counter import increment, increment_command


def test_leaving_a_relay_marks_the_rows_it_published_but_had_not_marked(table, processor):
    processor.handle(increment_command("c1"), increment)
    assert processor.relay.pending("c1") != []  # published, its mark still remembered
    with processor.relay as relay:
        pass
    assert (relay.unmarked("c1"), relay.pending("c1")) == ([], [])
