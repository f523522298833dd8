"""Hashed and salted partition keys, and hot key detection."""

from __future__ import annotations

from agents.backbone import Envelope, HotKeyDetector, PartitionKeys
from agents.backbone.partitions import hashed


def card_event(card: str, n: int) -> Envelope:
    return Envelope.new("payments.authorised", {}, source="/pay", subject=card,
                        id=f"{card}-{n}")


def test_keys_are_hashed_and_stable():
    keys = PartitionKeys()
    first, again = keys.for_event(card_event("4111", 1)), keys.for_event(card_event("4111", 2))
    assert first == again == hashed("4111")
    assert "4111" not in first


def test_a_salted_hot_key_spreads_over_its_sub_keys_and_a_resend_stays_put():
    keys = PartitionKeys({"4111": 4})
    spread = {keys.for_event(card_event("4111", n)) for n in range(200)}
    assert len(spread) == 4
    assert keys.for_event(card_event("4111", 7)) == keys.for_event(card_event("4111", 7))
    assert keys.for_event(card_event("5555", 1)) == hashed("5555")


def test_a_key_over_the_threshold_is_reported_hot_once_per_window():
    now = [0.0]
    detector = HotKeyDetector(threshold=3, window_seconds=10, clock=lambda: now[0])
    assert [detector.seen("k") for _ in range(5)] == [False, False, False, True, False]
    now[0] = 11.0
    assert [detector.seen("k") for _ in range(4)] == [False, False, False, True]
