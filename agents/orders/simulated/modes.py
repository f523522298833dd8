"""Failure modes of the simulated inventory, payment gateway and shipping services.

A mode applies to every call of a service or only to one SKU, card or order; switches live
in a Table so every instance of a scaled-out app (and the test that sets them) agrees.
This module decides what a service answers; `handlers` records the effect and the reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from agents.backbone.errors import RetryLater
from agents.orders.model import SERVICE_OF_ACTION, Action, Service

if TYPE_CHECKING:  # the Tables SDK loads with the first table client (cold start)
    from azure.data.tables import TableClient


class Mode(StrEnum):
    NORMAL = "normal"
    DECLINE = "decline"
    OUT_OF_STOCK = "out-of-stock"
    OUT_OF_STOCK_AFTER_CHARGE = "out-of-stock-after-charge"
    SLOW = "slow"
    FLAKY = "flaky"
    FAIL = "fail"


SHARED_MODES = frozenset({Mode.NORMAL, Mode.SLOW, Mode.FLAKY, Mode.FAIL})
MODES_OF_SERVICE = {
    Service.INVENTORY: SHARED_MODES | {Mode.OUT_OF_STOCK, Mode.OUT_OF_STOCK_AFTER_CHARGE},
    Service.PAYMENTS: SHARED_MODES | {Mode.DECLINE},
    Service.SHIPPING: SHARED_MODES,
}
# The modes that make each step answer "no"; compensations are never refused.
REFUSING_MODES = {
    Action.RESERVE_STOCK: {Mode.OUT_OF_STOCK, Mode.FAIL},
    Action.CHARGE_PAYMENT: {Mode.DECLINE, Mode.FAIL},
    Action.ALLOCATE_STOCK: {Mode.OUT_OF_STOCK_AFTER_CHARGE, Mode.FAIL},
    Action.SHIP_ORDER: {Mode.FAIL},
}
FLAKY_FAILED_ATTEMPTS = 2
# Well inside a step deadline (the demo's and chaos' 5 s): a flaky step is late, not timed out.
FLAKY_RETRY_AFTER_SECONDS = 1.0
DEFAULT_SLOW_SECONDS = 60.0


class TransientServiceError(RetryLater):
    """The simulated service is briefly unavailable, as a 503 with Retry-After: the trigger
    puts the command back for later (a scheduled copy), spending none of its deliveries."""


@dataclass(frozen=True)
class Switch:
    mode: Mode = Mode.NORMAL
    slow_seconds: float = DEFAULT_SLOW_SECONDS


@dataclass(frozen=True)
class Answer:
    succeeded: bool
    delay_seconds: float = 0.0
    reason: str | None = None


def answer(action: Action, switch: Switch, attempt: int) -> Answer:
    """What the service answers to `action` in `switch`'s mode on this attempt (1 for a
    command as sent, n + 1 for the copy the trigger put back n times)."""
    service = SERVICE_OF_ACTION[action]
    if switch.mode is Mode.FLAKY and attempt <= FLAKY_FAILED_ATTEMPTS:
        raise TransientServiceError(f"{service} flaky on attempt {attempt}",
                                    retry_after=FLAKY_RETRY_AFTER_SECONDS)
    if switch.mode in REFUSING_MODES.get(action, ()):
        return Answer(False, reason=f"{service} {action}: {switch.mode}")
    # Slowness is shown on the saga's steps; compensations answer promptly.
    slow = switch.mode is Mode.SLOW and action in REFUSING_MODES
    return Answer(True, delay_seconds=switch.slow_seconds if slow else 0.0)


def scopes(order_id: str, card: str, skus: Iterable[str]) -> list[str]:
    """The switch scopes that apply to one call, most specific first."""
    return [f"order:{order_id}", f"card:{card}", *(f"sku:{sku}" for sku in skus), "*"]


class Switchboard:
    """Failure-mode switches in a Table: PartitionKey = service, RowKey = scope."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def set(self, service: Service, scope: str, switch: Switch) -> None:
        from azure.data.tables import UpdateMode

        if switch.mode not in MODES_OF_SERVICE[service]:
            raise ValueError(f"{service} has no mode {switch.mode}")
        if switch.mode is Mode.NORMAL:
            self._table.delete_entity(service.value, scope)
            return
        self._table.upsert_entity(
            {"PartitionKey": service.value, "RowKey": scope, "mode": switch.mode.value,
             "slowSeconds": switch.slow_seconds},
            mode=UpdateMode.REPLACE,
        )

    def lookup(self, service: Service, applicable: list[str]) -> Switch:
        """One query for the service's switches; the most specific applicable one wins."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            rows = {
                row["RowKey"]: row
                for row in self._table.query_entities(
                    "PartitionKey eq @service", parameters={"service": service.value}
                )
            }
        except ResourceNotFoundError:
            return Switch()
        for scope in applicable:
            if scope in rows:
                row = rows[scope]
                return Switch(Mode(row["mode"]), float(row["slowSeconds"]))
        return Switch()

    def clear(self) -> None:
        for row in self._table.list_entities(select=["PartitionKey", "RowKey"]):
            self._table.delete_entity(row["PartitionKey"], row["RowKey"])
