"""Fixtures for the devstack conformance tests: a fresh in-process devstack per test, with
short lock durations so lock behaviour is observable without long waits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from devstack.server import DevStack

NORMAL = {"LockDuration": "PT30S", "MaxDeliveryCount": 3}


def queue(name: str, **properties: Any) -> dict[str, Any]:
    return {"Name": name, "Properties": {**NORMAL, **properties}}


def servicebus_config(queues: list[dict[str, Any]],
                      topics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "UserConfig": {
            "Namespaces": [{"Name": "sbemulatorns", "Queues": queues, "Topics": topics or []}],
            "Logging": {"Type": "Console"},
        }
    }


TEST_CONFIG = servicebus_config(
    [
        queue("work"),
        queue("short-lock", LockDuration="PT1S", MaxDeliveryCount=10),
        queue("two-tries", MaxDeliveryCount=2),
        queue("dedupe", RequiresDuplicateDetection=True,
              DuplicateDetectionHistoryTimeWindow="PT1M"),
        queue("dedupe-short", RequiresDuplicateDetection=True,
              DuplicateDetectionHistoryTimeWindow="PT1S"),
        queue("expiring", DeadLetteringOnMessageExpiration=True),
        queue("expiring-drop", DeadLetteringOnMessageExpiration=False),
        queue("sessions", RequiresSession=True, LockDuration="PT5S"),
        queue("forwarder", ForwardTo="work"),
        queue("dlq-forwarder", MaxDeliveryCount=1, ForwardDeadLetteredMessagesTo="parking"),
        queue("parking"),
    ],
    [
        {
            "Name": "events",
            "Properties": {"RequiresDuplicateDetection": False},
            "Subscriptions": [
                {"Name": "all", "Properties": NORMAL},
                {
                    "Name": "billing",
                    "Properties": NORMAL,
                    "Rules": [{"Name": "team-billing", "Properties": {
                        "FilterType": "Correlation",
                        "CorrelationFilter": {"Properties": {"team": "billing"}}}}],
                },
                {
                    "Name": "json",
                    "Properties": NORMAL,
                    "Rules": [{"Name": "json-only", "Properties": {
                        "FilterType": "Correlation",
                        "CorrelationFilter": {"ContentType": "application/json"}}}],
                },
                {
                    "Name": "urgent",
                    "Properties": NORMAL,
                    "Rules": [{"Name": "p1", "Properties": {
                        "FilterType": "Sql",
                        "SqlFilter": {"SqlExpression":
                                      "priority = 'P1' AND (size > 10 OR sys.Label LIKE 'vip%')"},
                        "Action": {"SqlExpression": "SET sys.To = 'pager'; SET routed = 1"}}}],
                },
            ],
        }
    ],
)


@pytest.fixture
def stack() -> Iterator[DevStack]:
    with DevStack([TEST_CONFIG], port=0) as running:
        yield running


@pytest.fixture
def connection_string(stack: DevStack) -> str:
    return stack.connection_string


@pytest.fixture
def client(connection_string: str) -> Iterator[ServiceBusClient]:
    """The sync Service Bus SDK client on this test's devstack."""
    with ServiceBusClient.from_connection_string(connection_string) as sb:
        yield sb


def wait_until(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)
