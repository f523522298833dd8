"""Settle after dispatch, each delivery in the test's hands: redelivery, crashes, poison, 503s."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from azure.data.tables import TableServiceClient

from agents.backbone import (
    Disposition,
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    Publisher,
    PublishFailed,
    Settlement,
    StorageUnavailable,
    classify,
    state_table,
)
from tests.integration.backbone.conftest import make_processor, rows
from tests.integration.backbone.counter import (
    COMMANDS,
    EVENTS,
    PROJECTION,
    consumer,
    increment,
    increment_command,
    project,
)
from tests.integration.backbone.deliveries import Deliveries
from tests.integration.backbone.faults import OutageTransport, StorageOutage


def send_command(deliveries: Deliveries, counter_id: str, by: int = 1) -> str:
    command = increment_command(counter_id, by)
    deliveries.send(COMMANDS, command.to_json().encode(), command.id)
    return command.id


def consumers(processor, schemas):
    return {COMMANDS: consumer(processor, schemas, increment),
            EVENTS: consumer(processor, schemas, project, partition_key=PROJECTION)}


def state(table, partition: str) -> dict:
    return json.loads(table.get_entity(partition, "state")["state"])


def test_each_message_delivered_three_times_gives_one_effect_downstream(
    table, schemas
):
    deliveries = Deliveries(copies=3)
    processor = make_processor(table, deliveries, schemas)
    for n in range(10):
        send_command(deliveries, f"c{n % 3}", by=n + 1)
    settled = deliveries.run(consumers(processor, schemas))
    assert [d.settlement for d in settled].count(Settlement.COMPLETED) == 60  # 3 x (10 + 10)
    assert state(table, PROJECTION) == {"seen": 10, "sum": 55}
    assert sum(state(table, f"c{n}")["total"] for n in range(3)) == 55
    assert len(deliveries.published) == 10


class CrashingPublisher:
    """Dies once around a publish: before sending, or after sending but before returning."""

    def __init__(self, inner: Publisher, *, after_send: bool) -> None:
        self.inner, self.after_send, self.crashed = inner, after_send, False

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        if not self.crashed:
            self.crashed = True
            if self.after_send:
                self.inner.publish(rows)
            raise PublishFailed("process crashed between commit and dispatch")
        self.inner.publish(rows)


@pytest.mark.parametrize("after_send", [False, True], ids=["before-send", "after-send"])
def test_crash_between_commit_and_dispatch_is_healed_by_redelivery_with_one_effect(
    table, schemas, processor, deliveries, after_send
):
    processor.relay.publisher = CrashingPublisher(deliveries, after_send=after_send)
    command_id = send_command(deliveries, "c1", by=7)
    settled = deliveries.run(consumers(processor, schemas))
    commands = [d for d in settled if d.destination == COMMANDS]
    assert [d.settlement for d in commands] == [Settlement.ABANDONED, Settlement.COMPLETED]
    assert [d.delivery_count for d in commands] == [1, 2]
    assert state(table, "c1")["total"] == 7
    assert state(table, PROJECTION) == {"seen": 1, "sum": 7}
    # A re-send carries the same MessageId, which Service Bus duplicate detection drops
    # (tests/devstack); here the second copy reaches the projection and its inbox absorbs it.
    sent = [m.message_id for m in deliveries.sent[EVENTS]]
    assert len(set(sent)) == 1 and len(sent) == (2 if after_send else 1)
    assert [row.message_id for row in processor.relay.unmarked("c1")] == [
        row.message_id for row in processor.relay.pending("c1")]
    assert command_id not in {m.message_id for m in deliveries.dead_letters.get(COMMANDS, [])}


INVALID = [
    (b"\xff\xfe not utf-8", {}, "InvalidEncoding"),
    (b"{not json", {}, "InvalidEncoding"),
    (b'{"by": 1}', {}, "NotACloudEvent"),
    (json.dumps({"specversion": "1.0", "id": "x1", "source": "/t", "type": "counter.nope",
                 "subject": "c1", "data": {}}).encode(), {}, "UnknownEventType"),
    (json.dumps({"specversion": "1.0", "id": "x2", "source": "/t", "type": "counter.increment",
                 "subject": "c1", "data": {"by": "seven"}}).encode(), {}, "SchemaViolation"),
    (json.dumps({"specversion": "0.3", "id": "x3", "source": "/t", "type": "counter.increment",
                 "subject": "c1", "data": {"by": 1}}).encode(), {}, "InvalidEnvelope"),
    (json.dumps({"specversion": "1.0", "id": "x4", "source": "/t", "type": "counter.increment",
                 "data": {"by": 1}}).encode(), {}, "NoPartitionKey"),
    (b'{"by": 2}', {"cloudEvents_specversion": "1.0", "cloudEvents_id": "x5",
                    "cloudEvents_source": "/t", "cloudEvents_type": "counter.increment",
                    "cloudEvents_subject": "c1", "cloudEvents_traceparent": "bogus"},
     "InvalidEnvelope"),
]


@pytest.mark.parametrize(("body", "properties", "reason"), INVALID,
                         ids=[case[2] + str(n) for n, case in enumerate(INVALID)])
def test_invalid_payloads_are_dead_lettered_at_once_with_a_reason_and_write_nothing(
    table, schemas, processor, deliveries, body, properties, reason
):
    send_command(deliveries, "c1", by=1)
    deliveries.run(consumers(processor, schemas))
    before = rows(table)
    deliveries.send(COMMANDS, body, "poison", properties)
    settled = deliveries.run(consumers(processor, schemas))
    assert [d.settlement for d in settled] == [Settlement.DEAD_LETTERED]
    [dead] = deliveries.dead_letters[COMMANDS]
    assert (dead.message_id, dead.dead_letter_reason, dead.delivery_count) == ("poison", reason, 1)
    assert dead.dead_letter_error_description
    assert rows(table) == before


@pytest.fixture
def outage():
    with StorageOutage() as server:
        yield server


@pytest.fixture
def flaky(storage_connection_string, table, schemas, deliveries, outage):
    """A processor whose storage client goes through a switchable 503 outage."""
    transport = OutageTransport(outage)
    service = TableServiceClient.from_connection_string(
        storage_connection_string, transport=transport, retry_total=0)
    flaky_table = state_table(service, table.table_name, create=False)
    relay = OutboxRelay(flaky_table, deliveries)
    return transport, MessageProcessor(flaky_table, relay, registry=schemas)


def test_storage_503_is_transient_the_message_is_redelivered_and_handled_once(
    table, schemas, deliveries, flaky
):
    transport, processor = flaky
    send_command(deliveries, "c1", by=4)
    transport.fail_next(2)
    settled = deliveries.run(consumers(processor, schemas))
    assert [d.settlement for d in settled if d.destination == COMMANDS] == [
        Settlement.ABANDONED, Settlement.ABANDONED, Settlement.COMPLETED]
    assert transport.failed == 2
    assert state(table, "c1")["total"] == 4
    assert state(table, PROJECTION) == {"seen": 1, "sum": 4}


def test_a_lasting_storage_outage_dead_letters_after_max_delivery_count(
    table, schemas, deliveries, flaky
):
    transport, processor = flaky
    send_command(deliveries, "c1", by=4)
    transport.fail_next(10_000)
    settled = deliveries.run(consumers(processor, schemas))
    assert [d.settlement for d in settled] == [Settlement.ABANDONED] * deliveries.max_deliveries
    [dead] = deliveries.dead_letters[COMMANDS]
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert rows(table) == {}


def test_storage_503_surfaces_as_storage_unavailable_classified_transient(schemas, flaky):
    transport, processor = flaky
    transport.fail_next(1)
    with pytest.raises(StorageUnavailable, match="503") as raised:
        processor.handle(increment_command("c1"), increment)
    assert classify(raised.value) is Disposition.RETRY
