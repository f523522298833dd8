"""Routing outbox rows to the publisher that owns each destination."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.backbone import (
    ConfigurationError,
    Envelope,
    EventHubsPublisher,
    OutboxRow,
    RoutingPublisher,
)


class Recording:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.closed = 0

    def publish(self, rows):
        self.batches.append([row.destination for row in rows])

    def close(self):
        self.closed += 1


def row(destination: str, scheduled: bool = False) -> OutboxRow:
    now = datetime.now(UTC)
    return OutboxRow.new("p", Envelope.new("t", {}, source="/s"), destination=destination,
                         scheduled_at=now if scheduled else None, created_at=now)


def test_rows_go_to_the_publisher_of_their_destination_in_one_call_each():
    bus, hub = Recording(), Recording()
    RoutingPublisher({"orders-saga": bus, "fraud-payments": hub}).publish(
        [row("orders-saga"), row("fraud-payments"), row("orders-saga")])
    assert bus.batches == [["orders-saga", "orders-saga"]]
    assert hub.batches == [["fraud-payments"]]


def test_leaving_a_routing_publisher_closes_each_route_once():
    bus, hub = Recording(), Recording()
    with RoutingPublisher({"orders-saga": bus, "orders-inventory": bus, "fraud-payments": hub}):
        pass
    assert (bus.closed, hub.closed) == (1, 1)


def test_an_unrouted_destination_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="nowhere"):
        RoutingPublisher({}).publish([row("nowhere")])


def test_event_hubs_refuses_a_scheduled_row():
    with pytest.raises(ConfigurationError, match="cannot schedule"):
        EventHubsPublisher({}).publish([row("fraud-payments", scheduled=True)])


def test_a_send_that_cannot_reach_service_bus_raises_publish_failed_naming_the_queue():
    from azure.servicebus import ServiceBusClient

    from agents.backbone import PublishFailed, ServiceBusPublisher
    from devstack.azurite import free_port

    nobody = (f"Endpoint=sb://127.0.0.1:{free_port()};SharedAccessKeyName=k;SharedAccessKey=v;"
              "UseDevelopmentEmulator=true")
    with ServiceBusPublisher(ServiceBusClient.from_connection_string(
            nobody, retry_total=0)) as publisher, pytest.raises(PublishFailed, match="nowhere"):
        publisher.publish([row("nowhere")])
