"""`Lazy`: an agent is composed on first use, and only once."""

from __future__ import annotations

from agents.backbone.lazy import Lazy


def test_nothing_is_composed_until_first_use_and_then_only_once() -> None:
    composed: list[object] = []
    lazy = Lazy(lambda: composed.append(object()) or composed[-1])
    assert composed == []
    first, second = lazy.get(), lazy.get()
    assert first is second and composed == [first]

