"""Publishers on devstack with the official SDKs: one entity's slow send does not hold up
another's, a throttled or unanswering entity costs a handler thread its send budget and no
more, and closing a publisher closes the connections its clients opened."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.eventhub import EventHubProducerClient
from azure.servicebus import ServiceBusClient

from agents.backbone import (
    Envelope,
    EventHubsPublisher,
    OutboxRow,
    RoutingPublisher,
    ServiceBusPublisher,
)
from agents.backbone.errors import ConfigurationError, PublishFailed
from devstack.server import DevStack
from tests.integration.backbone.servicebus_pump import receive_until

HUB = "fraud-payments"
EVENTHUBS = Path(__file__).resolve().parents[3] / "infra" / "entities" / "eventhubs.json"
SETTLED = 30.0  # bound on waits for things that happen at once unless the code is wrong
BUDGET = 0.5  # the send budget these tests give publishers (seconds)


def queue(name: str) -> dict:
    return {"Name": name, "Properties": {"LockDuration": "PT1M", "MaxDeliveryCount": 3}}


@pytest.fixture(scope="module")
def devstack():
    servicebus = {"UserConfig": {"Namespaces": [{
        "Name": "sbemulatorns", "Topics": [],
        "Queues": [queue(q) for q in ("pub-slow", "pub-fast", "pub-close", "pub-held",
                                      "pub-other", "pub-busy")]}],
        "Logging": {"Type": "File"}}}
    configs = [servicebus, json.loads(EVENTHUBS.read_text())]
    with DevStack(configs=configs, port=0) as stack:
        yield stack


def outbox_rows(destination: str, count: int = 1) -> list[OutboxRow]:
    return [OutboxRow.new("k", Envelope.new("counter.incremented", {"n": n}, source="/tests",
                                            subject="k"),
                          destination=destination, scheduled_at=None,
                          created_at=datetime.now(UTC)) for n in range(count)]


def open_connections(devstack: DevStack) -> int:
    return devstack.call(lambda: len(devstack.amqp.connections))


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + SETTLED
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Publishing(threading.Thread):
    """`publisher.publish(rows)` on its own thread, as a Functions worker thread would."""

    def __init__(self, publisher: ServiceBusPublisher, rows: Sequence[OutboxRow]) -> None:
        super().__init__(daemon=True)
        self.publisher, self.rows = publisher, rows
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.publisher.publish(self.rows)
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()


def test_a_send_to_one_queue_goes_out_while_another_queues_send_is_held(devstack):
    client = ServiceBusClient.from_connection_string(devstack.connection_string)
    with ServiceBusPublisher(client) as publisher:
        held = devstack.faults.hold_sends("pub-slow")
        slow = Publishing(publisher, outbox_rows("pub-slow"))
        slow.start()
        try:
            assert held.wait(SETTLED), "the send to pub-slow never reached the broker"
            fast = Publishing(publisher, outbox_rows("pub-fast"))
            fast.start()
            fast_went_out = fast.done.wait(SETTLED)
            slow_still_held = not slow.done.is_set()
        finally:
            devstack.faults.release_sends("pub-slow")
            slow.done.wait(SETTLED)
        assert fast_went_out, "the send to pub-fast waited for pub-slow's held send"
        assert slow_still_held
        assert (fast.error, slow.error) == (None, None)
    with ServiceBusClient.from_connection_string(devstack.connection_string) as reader:
        for name in ("pub-fast", "pub-slow"):
            assert len(receive_until(reader, name, lambda got: len(got) >= 1)) == 1


def test_a_handler_pool_stuck_on_an_unanswering_queue_still_publishes_to_another_queue(
        devstack):
    """The worker's handler threads are a small pool shared by every function: handlers whose
    rows go to an entity that does not answer give their threads back after the send budget,
    so a handler publishing elsewhere gets a thread while that entity is still silent."""
    client = ServiceBusClient.from_connection_string(devstack.connection_string)
    threads = 2
    with ServiceBusPublisher(client, send_timeout=BUDGET) as publisher, \
            ThreadPoolExecutor(max_workers=threads) as pool:
        held = devstack.faults.hold_sends("pub-held")
        try:
            stuck = [pool.submit(publisher.publish, outbox_rows("pub-held"))
                     for _ in range(threads)]
            assert held.wait(SETTLED), "no send to pub-held reached the broker"
            other = pool.submit(publisher.publish, outbox_rows("pub-other"))
            assert wait_for(other.done), "every handler thread stayed stuck on pub-held's send"
            failures = [future.exception(SETTLED) for future in stuck]
        finally:
            devstack.faults.release_sends("pub-held")
        assert other.exception() is None
        assert [type(failure) for failure in failures] == [PublishFailed] * threads
        assert all("pub-held" in str(failure) for failure in failures)
    with ServiceBusClient.from_connection_string(devstack.connection_string) as reader:
        assert len(receive_until(reader, "pub-other", lambda got: len(got) >= 1)) == 1


def test_a_throttled_queue_fails_the_publish_instead_of_backing_off_and_the_rows_go_later(
        devstack):
    """Three server-busy answers: the SDK alone backs off 1.6 + 3.2 + 6.4 s and gets through;
    within a 0.5 s budget no back-off fits, so the publish fails at the first answer and the
    same rows go out on a later publish (the redelivery's), once the entity answers."""
    client = ServiceBusClient.from_connection_string(devstack.connection_string)
    rows = outbox_rows("pub-busy")
    with ServiceBusPublisher(client, send_timeout=BUDGET) as publisher:
        devstack.faults.server_busy("pub-busy", times=3)
        for _ in range(3):
            with pytest.raises(PublishFailed, match="pub-busy"):
                publisher.publish(rows)
        publisher.publish(rows)
    with ServiceBusClient.from_connection_string(devstack.connection_string) as reader:
        got = receive_until(reader, "pub-busy", lambda got: len(got) >= 1)
        with reader.get_queue_receiver("pub-busy") as receiver:
            left = receiver.peek_messages(max_message_count=10)
    assert [message.message_id for message in got] == [rows[0].message_id]
    assert left == [], "a refused send was enqueued too"


def test_a_send_budget_must_be_positive():
    with pytest.raises(ConfigurationError, match="send_timeout"):
        ServiceBusPublisher(ServiceBusClient.from_connection_string(
            "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;"
            "UseDevelopmentEmulator=true"), send_timeout=0)


def test_leaving_a_routing_publisher_closes_every_connection_its_publishers_opened(devstack):
    before = open_connections(devstack)
    bus = ServiceBusPublisher(ServiceBusClient.from_connection_string(devstack.connection_string))
    stream = EventHubsPublisher({HUB: EventHubProducerClient.from_connection_string(
        devstack.connection_string, eventhub_name=HUB)})
    with RoutingPublisher({"pub-close": bus, HUB: stream}) as publisher:
        publisher.publish(outbox_rows("pub-close") + outbox_rows(HUB))
        assert open_connections(devstack) > before
    assert wait_for(lambda: open_connections(devstack) == before)
