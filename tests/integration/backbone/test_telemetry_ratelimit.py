"""The edge rate limit's refusals are a metric per policy (Azurite, in-memory metric reader)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from azure.data.tables import TableClient

from agents.backbone import telemetry
from agents.backbone.ratelimit import RateLimiter, RatePolicy
from tests.telemetry_capture import installed, metric_value


def test_each_refused_request_is_counted_for_its_route(table: TableClient) -> None:
    installed()
    route = f"orders-{uuid.uuid4().hex[:6]}"
    limiter = RateLimiter(table, RatePolicy(route, limit=10, window=timedelta(seconds=1),
                                            burst=5), clock=lambda: 1_800_000_000.0)
    answers = [limiter.admit("alice") for _ in range(8)]
    assert [answer.allowed for answer in answers] == [True] * 5 + [False] * 3
    assert metric_value(telemetry.RATE_LIMIT_REFUSED, {"backbone.route": route}) == 3
