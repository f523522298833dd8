"""The breaker shared through one Table entity on Azurite: separate instances, separate caches."""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
from azure.data.tables import TableClient

from agents.backbone import RequestCounter
from agents.backbone.breaker import BreakerOpen, BreakerOptions, BreakerState, CircuitBreaker
from devstack.azurite import Azurite, free_port
from devstack.storageproxy import StorageProxy
from tests.unit.reasoning.support import FakeClock

OPTIONS = BreakerOptions(failure_ratio=0.5, minimum_throughput=4, sampling_duration=10.0,
                         break_duration=5.0, sync_interval=1.0, probe_timeout=20.0)


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("down")


def fail_n(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            breaker.call(fail)


def instance(table: TableClient | None, clock: FakeClock, name: str = "llm") -> CircuitBreaker:
    return CircuitBreaker(name, table=table, options=OPTIONS, clock=clock)


def test_one_instance_trips_and_another_fails_fast_once_its_cache_expires(
        table: TableClient) -> None:
    clock = FakeClock()
    first, second = instance(table, clock), instance(table, clock)
    second.call(lambda: None)
    fail_n(first, 4)
    assert first.state is BreakerState.OPEN
    assert second.call(lambda: "cached") == "cached"  # within its cache TTL: not seen yet
    clock.advance(1.0)
    called = []
    with pytest.raises(BreakerOpen):
        second.call(lambda: called.append(1))
    assert called == []


def test_counts_of_all_instances_add_up_in_the_shared_window(table: TableClient) -> None:
    clock = FakeClock()
    first, second = instance(table, clock), instance(table, clock)
    fail_n(first, 2)
    fail_n(second, 1)
    clock.advance(1.0)
    first.call(lambda: None)  # flushes 2 failures
    fail_n(second, 1)         # flushes 2 failures: 4 failures in 5 calls
    assert second.state is BreakerState.OPEN
    clock.advance(1.0)
    with pytest.raises(BreakerOpen):
        first.call(lambda: None)


def test_the_closed_hot_path_reads_storage_about_once_per_sync_interval(
        table: TableClient, counter: RequestCounter) -> None:
    clock = FakeClock()
    breaker = instance(table, clock)
    before = counter.total
    for _ in range(10):
        for _ in range(100):
            breaker.call(lambda: None)
        clock.advance(0.25)
    assert counter.total - before <= 4  # 10 x 100 calls in 2.5 s: 3 syncs, 1 request each


def test_an_open_breaker_touches_storage_only_when_its_break_ends(
        table: TableClient, counter: RequestCounter) -> None:
    clock = FakeClock()
    breaker = instance(table, clock)
    fail_n(breaker, 4)
    before = counter.total
    for _ in range(200):
        with pytest.raises(BreakerOpen):
            breaker.call(lambda: None)
        clock.advance(0.02)
    assert counter.total == before
    clock.advance(1.0)
    assert breaker.call(lambda: "probe") == "probe"
    assert counter.total > before


def test_sixteen_instances_racing_at_the_end_of_a_break_send_exactly_one_probe(
        table: TableClient) -> None:
    clock = FakeClock()
    breakers = [instance(table, clock) for _ in range(16)]
    for breaker in breakers:
        breaker.call(lambda: None)
    fail_n(breakers[0], 3)  # with its success: 3 failures in 4 calls
    assert breakers[0].state is BreakerState.OPEN
    clock.advance(5.0)
    start, probed = threading.Barrier(16), []
    probe_running, release, others_refused = threading.Event(), threading.Event(), \
        threading.Event()
    refused: list[BreakerOpen] = []

    def probe() -> None:
        probed.append(1)
        probe_running.set()
        release.wait(20)

    def race(breaker: CircuitBreaker) -> None:
        start.wait(20)
        try:
            breaker.call(probe)
        except BreakerOpen as error:
            refused.append(error)
            if len(refused) == 15:
                others_refused.set()

    threads = [threading.Thread(target=race, args=(b,)) for b in breakers]
    for thread in threads:
        thread.start()
    assert probe_running.wait(20)
    assert others_refused.wait(20)  # all 15 refused while the probe is still running
    release.set()
    for thread in threads:
        thread.join(20)
    assert (len(probed), len(refused)) == (1, 15)
    clock.advance(1.0)
    assert [b.call(lambda: "ok") for b in breakers] == ["ok"] * 16


def test_a_probe_whose_instance_vanished_is_retaken_after_the_lease_expires(
        table: TableClient) -> None:
    clock = FakeClock()
    crashed, survivor = instance(table, clock), instance(table, clock)
    fail_n(crashed, 4)
    clock.advance(5.0)
    crashed._admit()  # takes the lease, then its process dies before answering
    with pytest.raises(BreakerOpen):
        survivor.call(lambda: None)
    clock.advance(20.0)
    assert survivor.call(lambda: "probe") == "probe"
    assert survivor.state is BreakerState.CLOSED


def test_when_table_fails_it_degrades_to_a_local_breaker_and_says_so(
        storage_connection_string: str, caplog: pytest.LogCaptureFixture) -> None:
    dead = TableClient.from_connection_string(
        storage_connection_string.replace(
            storage_connection_string.split("TableEndpoint=")[1].split(";")[0],
            f"http://127.0.0.1:{free_port()}/devstoreaccount1"),
        "breakers", retry_total=0)
    clock = FakeClock()
    breaker = instance(dead, clock)
    with caplog.at_level(logging.WARNING, logger="agents.breaker"):
        breaker.call(lambda: None)
        fail_n(breaker, 3)
    assert not breaker.shared
    assert breaker.state is BreakerState.OPEN
    assert "degrading to a local-only breaker" in caplog.text
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: None)


def test_after_table_comes_back_the_breaker_shares_state_again(
        azurite: Azurite, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    name = f"b{uuid.uuid4().hex[:16]}"
    with StorageProxy(azurite) as proxy:
        direct = TableClient.from_connection_string(azurite.connection_string, name)
        direct.create_table()
        flaky = TableClient.from_connection_string(proxy.connection_string, name,
                                                   retry_total=0)
        degraded = instance(flaky, clock, "comeback")
        other = instance(direct, clock, "comeback")
        other.call(lambda: None)
        outage = proxy.faults.unavailable(service="table")
        with caplog.at_level(logging.WARNING, logger="agents.breaker"):
            fail_n(degraded, 4)
            assert (degraded.shared, degraded.state) == (False, BreakerState.OPEN)
            proxy.faults.disarm(outage)
            clock.advance(OPTIONS.storage_retry)
            degraded.call(lambda: None)  # the shared state (closed) replaces the local one
            assert degraded.shared and degraded.state is BreakerState.CLOSED
            assert "Table reachable again" in caplog.text
            clock.advance(1.0)
            fail_n(degraded, 3)  # 3 failures in 4 calls: opens, for every instance
        clock.advance(1.0)
        with pytest.raises(BreakerOpen):
            other.call(lambda: None)
        direct.delete_table()
