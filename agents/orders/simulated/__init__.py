"""Simulated inventory, payment gateway and shipping services for the order saga: NOT
production. Their functions are registered only when `ORDERS_SIMULATORS_ENABLED` is true
(local.settings.sample.json; Bicep deploys false, where real services answer the saga's queues).

`modes` (switchable failure modes), `handlers` (ledgers and replies), `bootstrap`
(composition), `blueprint` (triggers and the mode route).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from agents.backbone.errors import ConfigurationError

SETTING: Final = "ORDERS_SIMULATORS_ENABLED"
_VALUES = {"true": True, "1": True, "false": False, "0": False, "": False}


def enabled(env: Mapping[str, str]) -> bool:
    """Whether the app registers the simulated services (unset: no); any other value than
    true/false/1/0 is an error naming the setting, not a silent "no"."""
    value = env.get(SETTING, "").strip().lower()
    if value not in _VALUES:
        raise ConfigurationError(f"{SETTING} must be true or false, not {env[SETTING]!r}")
    return _VALUES[value]
