"""The order saga as a pure state machine: replies in, commands and deadlines out.

Flow: reserve stock -> charge payment -> allocate stock -> ship. A reservation is only a hold
until allocation confirms it, so inventory can still run out after the charge; that case,
a declined payment, a failed shipment, a step that misses its deadline and a fraud alert all
compensate what may have taken effect, in reverse order (refund, then release).
No I/O here: handlers load an `Order`, call one method, and commit what it emitted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class OrderStatus(StrEnum):
    RESERVING = "reserving"
    CHARGING = "charging"
    ALLOCATING = "allocating"
    SHIPPING = "shipping"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    REJECTED = "rejected"


TERMINAL = frozenset({OrderStatus.COMPLETED, OrderStatus.COMPENSATED, OrderStatus.REJECTED})


class Step(StrEnum):
    RESERVE_STOCK = "reserve_stock"
    CHARGE_PAYMENT = "charge_payment"
    ALLOCATE_STOCK = "allocate_stock"
    SHIP_ORDER = "ship_order"
    REFUND_PAYMENT = "refund_payment"
    RELEASE_STOCK = "release_stock"


FORWARD = (Step.RESERVE_STOCK, Step.CHARGE_PAYMENT, Step.ALLOCATE_STOCK, Step.SHIP_ORDER)
STATUS_OF_STEP = {
    Step.RESERVE_STOCK: OrderStatus.RESERVING,
    Step.CHARGE_PAYMENT: OrderStatus.CHARGING,
    Step.ALLOCATE_STOCK: OrderStatus.ALLOCATING,
    Step.SHIP_ORDER: OrderStatus.SHIPPING,
}
# What undoes each step; a shipped parcel is not recalled by this saga.
COMPENSATION_OF_STEP = {
    Step.RESERVE_STOCK: Step.RELEASE_STOCK,
    Step.CHARGE_PAYMENT: Step.REFUND_PAYMENT,
    Step.ALLOCATE_STOCK: Step.RELEASE_STOCK,
}


class Reply(StrEnum):
    """What the services answer, and the saga's own timers and alerts."""

    STOCK_RESERVED = "stock-reserved"
    STOCK_UNAVAILABLE = "stock-unavailable"
    PAYMENT_CHARGED = "payment-charged"
    PAYMENT_DECLINED = "payment-declined"
    STOCK_ALLOCATED = "stock-allocated"
    STOCK_ALLOCATION_FAILED = "stock-allocation-failed"
    SHIPMENT_DISPATCHED = "shipment-dispatched"
    SHIPMENT_FAILED = "shipment-failed"
    PAYMENT_REFUNDED = "payment-refunded"
    STOCK_RELEASED = "stock-released"


SUCCESS_OF_STEP = {
    Step.RESERVE_STOCK: Reply.STOCK_RESERVED,
    Step.CHARGE_PAYMENT: Reply.PAYMENT_CHARGED,
    Step.ALLOCATE_STOCK: Reply.STOCK_ALLOCATED,
    Step.SHIP_ORDER: Reply.SHIPMENT_DISPATCHED,
    Step.REFUND_PAYMENT: Reply.PAYMENT_REFUNDED,
    Step.RELEASE_STOCK: Reply.STOCK_RELEASED,
}
FAILURE_OF_STEP = {
    Step.RESERVE_STOCK: Reply.STOCK_UNAVAILABLE,
    Step.CHARGE_PAYMENT: Reply.PAYMENT_DECLINED,
    Step.ALLOCATE_STOCK: Reply.STOCK_ALLOCATION_FAILED,
    Step.SHIP_ORDER: Reply.SHIPMENT_FAILED,
}
STEP_OF_REPLY = {reply: step for step, reply in SUCCESS_OF_STEP.items()} | {
    reply: step for step, reply in FAILURE_OF_STEP.items()
}


@dataclass(frozen=True)
class LineItem:
    sku: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True)
class StepCommand:
    """Ask a service to perform a step; `attempt` makes each retry a distinct message."""

    step: Step
    order_id: str
    attempt: int
    data: dict[str, Any]


@dataclass(frozen=True)
class StepDeadline:
    """Wake the saga if the step with this sequence number is still unanswered."""

    step: Step
    order_id: str
    sequence: int


@dataclass(frozen=True)
class TimelineEntry:
    step: str
    status: str
    at: str
    detail: str = ""


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Order:
    order_id: str
    customer_id: str
    items: list[LineItem]
    card: str
    request_hash: str
    status: OrderStatus = OrderStatus.RESERVING
    step: Step | None = None
    sequence: int = 0
    attempts: int = 0
    effects: list[Step] = field(default_factory=list)
    compensations: list[Step] = field(default_factory=list)
    reason: str = ""
    timeline: list[TimelineEntry] = field(default_factory=list)
    pending: list[StepCommand | StepDeadline] = field(default_factory=list, repr=False)

    @classmethod
    def place(
        cls, order_id: str, customer_id: str, items: list[LineItem], card: str, request_hash: str
    ) -> Order:
        order = cls(order_id, customer_id, items, card, request_hash)
        order._note("order", "placed", f"{len(items)} line(s), {order.amount_cents} cents")
        order._request(Step.RESERVE_STOCK)
        return order

    @property
    def amount_cents(self) -> int:
        return sum(item.quantity * item.unit_price_cents for item in self.items)

    @property
    def charge_id(self) -> str:
        return f"charge-{self.order_id}"

    @property
    def reservation_id(self) -> str:
        return f"reservation-{self.order_id}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def collect(self) -> list[StepCommand | StepDeadline]:
        """Hand over what this change emitted (the unit of work writes it to the outbox)."""
        emitted, self.pending = self.pending, []
        return emitted

    def to_state(self) -> dict[str, Any]:
        """The JSON object the repository stores (emitted commands are not part of it)."""
        return {
            "orderId": self.order_id, "customerId": self.customer_id, "card": self.card,
            "items": [asdict(item) for item in self.items], "requestHash": self.request_hash,
            "status": self.status.value, "step": self.step.value if self.step else None,
            "sequence": self.sequence, "attempts": self.attempts,
            "effects": [step.value for step in self.effects],
            "compensations": [step.value for step in self.compensations],
            "reason": self.reason, "timeline": [asdict(entry) for entry in self.timeline],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Order:
        return cls(
            order_id=state["orderId"], customer_id=state["customerId"], card=state["card"],
            items=[LineItem(**item) for item in state["items"]],
            request_hash=state["requestHash"], status=OrderStatus(state["status"]),
            step=Step(state["step"]) if state["step"] else None, sequence=state["sequence"],
            attempts=state["attempts"], effects=[Step(step) for step in state["effects"]],
            compensations=[Step(step) for step in state["compensations"]],
            reason=state["reason"],
            timeline=[TimelineEntry(**entry) for entry in state["timeline"]],
        )

    def handle_reply(self, reply: Reply, detail: str = "") -> None:
        step = STEP_OF_REPLY[reply]
        if step is not self.step:
            self._note(step.value, "ignored", f"late {reply.value} while {self.status.value}")
            return
        succeeded = reply is SUCCESS_OF_STEP[step]
        self._note(step.value, "succeeded" if succeeded else "failed", detail)
        if self.status is OrderStatus.COMPENSATING:
            self._next_compensation()
        elif not succeeded:
            # A definite "no" means this step took no effect: nothing of it to undo.
            self.effects.remove(step)
            self._fail(f"{step.value} failed: {detail or reply.value}")
        elif step is Step.SHIP_ORDER:
            self.step = None
            self.status = OrderStatus.COMPLETED
            self._note("order", "completed")
        else:
            self._request(FORWARD[FORWARD.index(step) + 1])

    def handle_deadline(self, step: Step, sequence: int) -> None:
        if sequence != self.sequence or step is not self.step:
            return
        self._note(step.value, "timed-out", f"no reply to attempt {self.attempts}")
        if self.status is OrderStatus.COMPENSATING:
            # Compensations are never dropped: ask again, the services apply them idempotently.
            self._request(step, retry=True)
        else:
            self._fail(f"{step.value} timed out")

    def handle_fraud_alert(self, detail: str) -> None:
        if self.status in (OrderStatus.COMPENSATING, OrderStatus.COMPENSATED,
                           OrderStatus.REJECTED):
            self._note("fraud_alert", "ignored", f"already {self.status.value}: {detail}")
            return
        self._note("fraud_alert", "received", detail)
        if self.status is OrderStatus.COMPLETED:
            # The parcel is gone; the money goes back.
            self.effects = [Step.CHARGE_PAYMENT]
        self._fail(f"fraud alert: {detail}")

    def _fail(self, reason: str) -> None:
        self.reason = reason
        undo: list[Step] = []
        for step in reversed(self.effects):
            compensation = COMPENSATION_OF_STEP.get(step)
            if compensation is not None and compensation not in undo:
                undo.append(compensation)
        self.effects = []
        if not undo:
            self.step = None
            self.status = OrderStatus.REJECTED
            self._note("order", "rejected", reason)
            return
        self.status = OrderStatus.COMPENSATING
        self.compensations = undo
        self._note("order", "compensating", reason)
        self._next_compensation()

    def _next_compensation(self) -> None:
        if not self.compensations:
            self.step = None
            self.status = OrderStatus.COMPENSATED
            self._note("order", "compensated", self.reason)
            return
        self._request(self.compensations.pop(0))

    def _request(self, step: Step, *, retry: bool = False) -> None:
        self.step = step
        self.sequence += 1
        self.attempts = self.attempts + 1 if retry else 1
        if step in STATUS_OF_STEP:
            self.status = STATUS_OF_STEP[step]
            self.effects.append(step)
        self._note(step.value, "requested", f"attempt {self.attempts}")
        self.pending.append(StepCommand(step, self.order_id, self.attempts, self._command_data()))
        self.pending.append(StepDeadline(step, self.order_id, self.sequence))

    def _command_data(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "customerId": self.customer_id,
            "items": [asdict(item) for item in self.items],
            "amountCents": self.amount_cents,
            "card": self.card,
            "chargeId": self.charge_id,
            "reservationId": self.reservation_id,
        }

    def _note(self, step: str, status: str, detail: str = "") -> None:
        self.timeline.append(TimelineEntry(step, status, utcnow(), detail))
