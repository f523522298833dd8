"""The simulated services' ledgers: each effect once per charge/reservation id, and a
compensation that overtakes its step voids it."""

from typing import Any

from agents.orders.model import Action, Service
from agents.orders.simulated.handlers import LEDGER_RULES
from agents.orders.simulated.modes import Answer

YES, NO = Answer(True), Answer(False, reason="refused")


class Movements:
    """Stands in for the unit of work: the ledgers only append movement rows to it."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append(self, row_key: str, values: dict[str, Any]) -> None:
        self.rows.append(values)

    def kinds(self) -> list[str]:
        return [row["movement"] for row in self.rows]


def _apply(service: Service, record: dict[str, Any], *steps: tuple[Action, Answer]
           ) -> tuple[list[tuple[bool, str | None]], Movements]:
    movements = Movements()
    results = [LEDGER_RULES[service](action, record, answer, movements)  # type: ignore[arg-type]
               for action, answer in steps]
    return results, movements


def test_a_repeated_charge_command_charges_once_and_answers_the_same() -> None:
    record = {"status": "none", "amountCents": 500}
    results, movements = _apply(Service.PAYMENTS, record, (Action.CHARGE_PAYMENT, YES),
                                (Action.CHARGE_PAYMENT, YES))
    assert [ok for ok, _ in results] == [True, True]
    assert movements.kinds() == ["charge"]


def test_a_refund_that_overtakes_its_charge_voids_it_and_the_late_charge_is_refused() -> None:
    record = {"status": "none", "amountCents": 500}
    results, movements = _apply(Service.PAYMENTS, record, (Action.REFUND_PAYMENT, YES),
                                (Action.CHARGE_PAYMENT, YES))
    assert results[1] == (False, "charge is voided")
    assert movements.kinds() == []


def test_a_refund_is_made_once() -> None:
    record = {"status": "none", "amountCents": 500}
    _, movements = _apply(Service.PAYMENTS, record, (Action.CHARGE_PAYMENT, YES),
                          (Action.REFUND_PAYMENT, YES), (Action.REFUND_PAYMENT, YES))
    assert movements.kinds() == ["charge", "refund"]


def test_a_declined_charge_stays_declined_on_redelivery() -> None:
    record = {"status": "none", "amountCents": 500}
    results, movements = _apply(Service.PAYMENTS, record, (Action.CHARGE_PAYMENT, NO),
                                (Action.CHARGE_PAYMENT, YES))
    assert [ok for ok, _ in results] == [False, False]
    assert movements.kinds() == []


def test_allocation_can_fail_after_a_hold_and_the_release_still_frees_it() -> None:
    record = {"status": "none", "amountCents": 0}
    results, movements = _apply(Service.INVENTORY, record, (Action.RESERVE_STOCK, YES),
                                (Action.ALLOCATE_STOCK, NO), (Action.RELEASE_STOCK, YES))
    assert [ok for ok, _ in results] == [True, False, True]
    assert movements.kinds() == ["hold", "release"]


def test_a_release_that_overtakes_its_reservation_voids_it() -> None:
    record = {"status": "none", "amountCents": 0}
    results, movements = _apply(Service.INVENTORY, record, (Action.RELEASE_STOCK, YES),
                                (Action.RESERVE_STOCK, YES))
    assert results[1] == (False, "reservation is void")
    assert movements.kinds() == []


def test_a_shipment_is_dispatched_once() -> None:
    record = {"status": "none", "amountCents": 0}
    results, movements = _apply(Service.SHIPPING, record, (Action.SHIP_ORDER, YES),
                                (Action.SHIP_ORDER, YES))
    assert [ok for ok, _ in results] == [True, True]
    assert movements.kinds() == ["shipment"]
