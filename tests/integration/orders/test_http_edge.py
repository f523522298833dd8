"""The HTTP edge through the registered route functions: Idempotency-Key rules, validation,
the order view and the simulator switch route; what they publish stays in the test's
`Deliveries` until delivered."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from agents.backbone.ratelimit import RateLimiter, RatePolicy
from agents.orders import entities
from tests.integration.orders.stack import OrdersStack, body_of, order_body


def _post(stack: OrdersStack, body: object, key: str | None,
          extra: dict[str, str] | None = None):
    headers = {**(extra or {}), **({} if key is None else {"Idempotency-Key": key})}
    return stack.http("POST", "orders", body=body, headers=headers)


def test_an_order_without_idempotency_key_is_refused_and_nothing_is_sent(
        stack: OrdersStack) -> None:
    response = _post(stack, order_body(), None)
    assert response.status_code == 400
    assert "Idempotency-Key" in body_of(response)["detail"]
    assert stack.deliveries.sent.get(entities.INVENTORY_QUEUE, []) == []


def test_the_same_key_and_body_return_the_same_order_and_start_one_saga(
        stack: OrdersStack) -> None:
    key, body = str(uuid.uuid4()), order_body()
    first, second = _post(stack, body, key), _post(stack, body, key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert body_of(first)["orderId"] == body_of(second)["orderId"]
    assert first.headers["Location"] == f"/api/orders/{body_of(first)['orderId']}"
    assert len(stack.deliveries.sent[entities.INVENTORY_QUEUE]) == 1


def test_a_different_body_under_a_used_key_is_a_conflict(stack: OrdersStack) -> None:
    key = str(uuid.uuid4())
    assert _post(stack, order_body(card="tok-a"), key).status_code == 201
    response = _post(stack, order_body(card="tok-b"), key)
    assert response.status_code == 409


def test_an_invalid_body_is_refused_with_the_reason(stack: OrdersStack) -> None:
    body = order_body()
    body["items"][0]["quantity"] = 0
    response = _post(stack, body, str(uuid.uuid4()))
    assert response.status_code == 400
    assert "items/0/quantity" in body_of(response)["detail"]


def test_an_order_shows_its_state_and_step_timeline(stack: OrdersStack) -> None:
    order_id = stack.place(order_body())["orderId"]
    stack.run()
    order = stack.order(order_id)
    assert order["status"] == "completed"
    assert order["amountCents"] == 2500
    steps = [(e["step"], e["status"]) for e in order["timeline"] if e["phase"] == "action"]
    assert [s for s in steps if s[1] == "succeeded"] == [
        ("reserve_stock", "succeeded"), ("charge_payment", "succeeded"),
        ("allocate_stock", "succeeded"), ("ship_order", "succeeded")]
    times = [datetime.fromisoformat(e["at"]) for e in order["timeline"]]
    assert times == sorted(times)
    assert all(set(e) >= {"step", "phase", "status", "detail"} for e in order["timeline"])


def test_an_unknown_order_is_not_found(stack: OrdersStack) -> None:
    response = stack.http("GET", "orders/{order_id}", route_params={"order_id": "nope"})
    assert response.status_code == 404


def test_the_simulator_route_switches_a_mode_that_the_next_order_meets(
        stack: OrdersStack) -> None:
    response = stack.http("POST", "simulators/{service}/mode",
                               route_params={"service": "payments"},
                               body={"mode": "decline", "scope": "card:tok-route"})
    assert response.status_code == 200
    order_id = stack.place(order_body(card="tok-route"))["orderId"]
    stack.run()
    assert stack.order(order_id)["status"] == "compensated"


def test_the_simulator_route_refuses_a_mode_the_service_does_not_have(
        stack: OrdersStack) -> None:
    response = stack.http("POST", "simulators/{service}/mode",
                               route_params={"service": "shipping"}, body={"mode": "decline"})
    assert response.status_code == 400


def test_the_simulator_route_knows_only_the_simulated_services(stack: OrdersStack) -> None:
    response = stack.http("POST", "simulators/{service}/mode",
                               route_params={"service": "bank"}, body={"mode": "fail"})
    assert response.status_code == 404


def test_a_caller_over_its_rate_gets_429_with_retry_after_and_nothing_is_sent(
        stack: OrdersStack) -> None:
    limited = replace(stack.agent, limiter=RateLimiter(
        stack.agent.sagas.table, RatePolicy("orders", 1, timedelta(minutes=1), burst=2,
                                            caller="function-key"),
        clock=lambda: 1_800_000_000.0))  # a stopped clock: the figures below are exact
    edge = stack.with_agent(limited)
    answers = [_post(edge, order_body(), str(uuid.uuid4()), {"x-functions-key": "k1"})
               for _ in range(3)]
    other = _post(edge, order_body(), str(uuid.uuid4()), {"x-functions-key": "k2"})
    assert [a.status_code for a in answers] == [201, 201, 429]
    refused = answers[2]
    assert refused.headers["Retry-After"] == "60"  # one emission interval of 1/min
    assert refused.headers["RateLimit"].startswith('"orders";r=0;')
    assert answers[0].headers["RateLimit"] == '"orders";r=1;t=60'
    assert answers[0].headers["RateLimit-Policy"] == '"orders";q=2;w=60'
    assert other.status_code == 201  # another caller has its own bucket
    assert len(stack.deliveries.sent[entities.INVENTORY_QUEUE]) == 3
