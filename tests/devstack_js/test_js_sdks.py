"""devstack through a second client stack: the JavaScript SDKs (@azure/service-bus,
@azure/event-hubs, rhea underneath), one node script per scenario in scenarios/, each
printing what it saw as one JSON line."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.server import DevStack
from tests.devstack.conftest import TEST_CONFIG
from tests.devstack.test_eventhubs_sdk import SAMPLE_CONFIG

SCENARIOS = Path(__file__).parent / "scenarios"
REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
SCENARIO_TIMEOUT = 60


@pytest.fixture
def stack() -> Iterator[DevStack]:
    with DevStack([TEST_CONFIG, SAMPLE_CONFIG], port=0, admin_port=0) as running:
        yield running


def scenario(stack: DevStack, name: str) -> dict[str, Any]:
    """Run scenarios/<name>.mjs against `stack` and return the JSON it printed."""
    assert NODE is not None, "node is not on PATH (the Makefile's npm ci needs it too)"
    assert (REPO / "node_modules" / "@azure" / "service-bus").exists(), \
        "the JavaScript SDKs are not installed: run `npm ci` (make install does)"
    done = subprocess.run(
        [NODE, str(SCENARIOS / f"{name}.mjs")], capture_output=True, text=True,
        timeout=SCENARIO_TIMEOUT,
        env={"PATH": str(Path(NODE).parent),
             "DEVSTACK_CONNECTION_STRING": stack.connection_string,
             "DEVSTACK_FAULTS_URL": str(stack.admin_url)})
    lines = done.stdout.strip().splitlines()
    assert lines, f"{name}.mjs printed nothing; stderr:\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0 and "error" not in result, (result, done.stderr[-2000:])
    return result


def test_send_receive_and_settle(stack):
    seen = scenario(stack, "send_receive_settle")
    assert seen["bodies"] == ["one", "two", "three"]
    assert all(isinstance(i, str) and len(i) == 32 for i in seen["messageIds"])
    assert seen["property"] == 3
    assert seen["redelivered"] == ["two", 1]
    assert (seen["expired"], seen["lateSettle"]) == (1, "MessageLockLost")
    assert seen["afterExpiry"] == ["two", 2]
    assert (seen["deleted"], seen["left"]) == ("gone", 0)


def test_dead_letter_with_reason_and_after_max_delivery_count(stack):
    seen = scenario(stack, "dead_letter")
    assert seen["letter"] == ["poison", "invalid", "no order id"]
    assert seen["exhausted"] == ["flaky", "MaxDeliveryCountExceeded"]


def test_sessions_in_order_with_state_and_next_available(stack):
    seen = scenario(stack, "sessions")
    assert seen["a"] == ["a1", "a2"]
    assert seen["state"] == "step-2"
    assert seen["next"] == ["b", "b1"]
    assert seen["refused"] != "none"


def test_scheduled_messages_cancel_and_peek(stack):
    seen = scenario(stack, "scheduled_and_peek")
    assert sorted(seen["peeked"]) == [["now", "active"], ["on time", "scheduled"]]
    assert seen["onTime"] == ["on time", True]
    assert seen["scheduledId"] == "string"
    assert seen["keptSequence"] is True


def test_correlation_and_sql_filters_route_topic_messages(stack):
    seen = scenario(stack, "filters")
    assert seen["billing"] == ["invoice"]
    assert seen["urgent"] == [["page", "pager", 1]]
    assert seen["json"] == ["json"]
    assert seen["all"] == 4


def test_duplicate_detection_drops_the_second_send(stack):
    seen = scenario(stack, "duplicates")
    assert seen["got"] == [["order-1", "first"], ["order-2", "other"]]


def test_auto_lock_renewal_keeps_slow_handlers_locks(stack):
    # The handlers outlast the 1 s lock on purpose: only renewal keeps them (no fault can
    # stand in for time passing in another process).
    seen = scenario(stack, "lock_renewal")
    assert seen["completed"] == [["slow-1", 0], ["slow-2", 0]]
    assert seen["errors"] == []


def test_event_hubs_partitions_batches_and_partition_keys(stack):
    seen = scenario(stack, "event_hubs")
    assert seen["ids"] == ["0", "1"]
    assert seen["partitionOne"] == ["p1-a", "p1-b"]
    counts = seen["counts"]
    assert sum(counts.values()) == 5
    assert 3 in (counts["0"], counts["1"] - 2)  # the keyed three stayed on one partition
