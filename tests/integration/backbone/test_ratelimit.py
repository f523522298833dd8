"""The edge rate limiter on Azurite: GCRA per caller shared by instances through one table,
refusals answered from the local cache, a local fallback when Table fails."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

import pytest
from azure.data.tables import TableClient, TableServiceClient

from agents.backbone import RequestCounter
from agents.backbone.ratelimit import RateLimiter, RatePolicy

POLICY = RatePolicy("orders", limit=10, window=timedelta(seconds=1), burst=5)


class Clock:
    def __init__(self, at: float = 1_800_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def instance(tables: TableServiceClient, table: TableClient, clock: Clock) -> RateLimiter:
    """A second instance: its own client and cache, the same table."""
    return RateLimiter(tables.get_table_client(table.table_name), POLICY, clock=clock)


def test_a_caller_gets_its_burst_then_a_429_answer_with_retry_after(table: TableClient):
    clock = Clock()
    limiter = RateLimiter(table, POLICY, clock=clock)
    answers = [limiter.admit("alice") for _ in range(6)]
    assert [a.allowed for a in answers] == [True] * 5 + [False]
    assert [a.remaining for a in answers[:5]] == [4, 3, 2, 1, 0]
    refused = answers[5]
    assert refused.retry_after_seconds == 1  # one emission interval (100 ms), rounded up
    assert refused.headers()["Retry-After"] == "1"
    assert refused.headers()["RateLimit"] == '"orders";r=0;t=1'
    assert refused.headers()["RateLimit-Policy"] == '"orders";q=5;w=1'
    assert "Retry-After" not in answers[0].headers()


def test_the_rate_refills_at_limit_per_window(table: TableClient):
    clock = Clock()
    limiter = RateLimiter(table, POLICY, clock=clock)
    assert all(limiter.admit("alice").allowed for _ in range(5))
    clock.advance(0.1)  # 10 per second: one more slot after 100 ms
    assert limiter.admit("alice").allowed
    assert not limiter.admit("alice").allowed
    clock.advance(0.5)
    assert sum(limiter.admit("alice").allowed for _ in range(10)) == 5


def test_callers_have_their_own_buckets(table: TableClient):
    limiter = RateLimiter(table, POLICY, clock=Clock())
    assert all(limiter.admit("alice").allowed for _ in range(5))
    assert not limiter.admit("alice").allowed
    assert limiter.admit("bob").allowed


def test_two_instances_on_one_table_never_admit_more_than_the_burst_together(
        tables: TableServiceClient, table: TableClient):
    clock = Clock()
    first, second = instance(tables, table, clock), instance(tables, table, clock)
    answers = [(first if i % 2 else second).admit("alice").allowed for i in range(12)]
    assert sum(answers) == 5
    clock.advance(1.0)
    assert sum((first if i % 3 else second).admit("alice").allowed for i in range(20)) == 5


def test_a_refused_caller_costs_no_storage_request_until_it_may_try_again(
        table: TableClient, counter: RequestCounter):
    clock = Clock()
    limiter = RateLimiter(table, POLICY, clock=clock)
    for _ in range(6):
        limiter.admit("alice")
    before = counter.total
    refusals = [limiter.admit("alice") for _ in range(100)]
    assert not any(a.allowed for a in refusals)
    assert counter.total == before
    clock.advance(0.1)
    assert limiter.admit("alice").allowed
    assert counter.total == before + 1  # the cached ETag still held: one conditional write


def test_an_admission_after_another_instance_wrote_rereads_and_still_counts_once(
        tables: TableServiceClient, table: TableClient, counter: RequestCounter):
    clock = Clock()
    first, second = instance(tables, table, clock), instance(tables, table, clock)
    assert first.admit("alice").allowed
    assert second.admit("alice").allowed
    before = counter.total
    answer = first.admit("alice")  # stale ETag: 412, read, write
    assert answer.allowed and answer.remaining == 2
    assert counter.total - before == 3


def test_when_table_fails_the_limiter_goes_on_per_instance_and_says_so(
        caplog: pytest.LogCaptureFixture):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once we leave: connections are refused
    unreachable = TableClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
        "limits", retry_total=0)
    clock = Clock()
    limiter = RateLimiter(unreachable, POLICY, clock=clock)
    with caplog.at_level(logging.WARNING, logger="agents.backbone.ratelimit"):
        answers = [limiter.admit("alice").allowed for _ in range(7)]
    assert answers == [True] * 5 + [False] * 2
    assert "limiting per instance" in caplog.text
    assert sum("Table storage failed" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(("spec", "expected"), [
    ("20/s", RatePolicy("edge", 20, timedelta(seconds=1))),
    ("600/min burst=50 caller=function-key",
     RatePolicy("edge", 600, timedelta(minutes=1), 50, "function-key")),
    ("100/10s caller=client-id", RatePolicy("edge", 100, timedelta(seconds=10), None, "client-id")),
])
def test_a_policy_is_read_from_one_setting(spec: str, expected: RatePolicy):
    assert RatePolicy.parse("edge", spec) == expected
