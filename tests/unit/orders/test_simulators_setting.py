"""`ORDERS_SIMULATORS_ENABLED`: whether the app registers the simulated services."""

from __future__ import annotations

import pytest

from agents.backbone import ConfigurationError
from agents.orders import simulated


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("True", True), ("1", True), ("false", False), ("0", False), ("", False)])
def test_true_or_false_decides(value: str, expected: bool) -> None:
    assert simulated.enabled({simulated.SETTING: value}) is expected


def test_unset_means_no_simulated_services() -> None:
    assert simulated.enabled({}) is False


def test_any_other_value_is_an_error_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match=simulated.SETTING):
        simulated.enabled({simulated.SETTING: "yes please"})
