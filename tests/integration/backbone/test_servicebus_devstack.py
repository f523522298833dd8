"""The Service Bus adapter and settle-after-dispatch with the official SDK against
devstack's Service Bus (AMQP 1.0 on loopback) and Azurite."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from agents.backbone import (
    Envelope,
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    SagaDefinition,
    SagaEngine,
    SagaStep,
    ServiceBusPublisher,
    Settlement,
    StepKind,
    parse_servicebus,
    reply_destination,
    reply_for,
    state_table,
)
from devstack.server import DevStack
from tests.integration.backbone.conftest import rows
from tests.integration.backbone.counter import increment, increment_command
from tests.integration.backbone.faults import OutageTransport, StorageOutage
from tests.integration.backbone.servicebus_pump import pump, receive_until
from tests.integration.backbone.test_settle_after_dispatch import CrashingPublisher

QUEUES = ("bb-shared", "bb-relay", "bb-dedupe", "bb-scheduled", "bb-commands", "bb-events",
          "bb-poison", "bb-outage", "bb-saga", "bb-inventory", "bb-alerts", "bb-sessions")
MAX_DELIVERY_COUNT = 3


def queue(name: str) -> dict:
    return {"Name": name, "Properties": {"RequiresSession": name.endswith("-sessions"),
        "DeadLetteringOnMessageExpiration": False, "DefaultMessageTimeToLive": "PT1H",
        "DuplicateDetectionHistoryTimeWindow": "PT5M", "ForwardDeadLetteredMessagesTo": "",
        "ForwardTo": "", "LockDuration": "PT1M", "MaxDeliveryCount": MAX_DELIVERY_COUNT,
        "RequiresDuplicateDetection": True}}


@pytest.fixture(scope="module")
def devstack():
    config = {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Topics": [],
                                             "Queues": [queue(q) for q in QUEUES]}],
                             "Logging": {"Type": "File"}}}
    with DevStack(configs=[config], port=0) as stack:
        yield stack


@pytest.fixture
def client(devstack):
    with ServiceBusClient.from_connection_string(devstack.connection_string) as sb:
        yield sb


@pytest.fixture
def sb_publisher(client):
    publisher = ServiceBusPublisher(client)
    yield publisher
    publisher.close()


def outbox_rows(destination: str, count: int, *, scheduled_at: datetime | None = None):
    return [OutboxRow.new("k", Envelope.new("counter.incremented", {"total": n, "by": 1},
                                            source="/tests", subject="k"),
                          destination=destination, scheduled_at=scheduled_at,
                          created_at=datetime.now(UTC)) for n in range(count)]


def test_rows_arrive_with_message_id_and_cloudevent_properties(client, sb_publisher, schemas):
    sent = outbox_rows("bb-relay", 3)
    sb_publisher.publish(sent)
    received = receive_until(client, "bb-relay", lambda got: len(got) == 3)
    assert [m.message_id for m in received] == [r.message_id for r in sent]
    assert received[0].application_properties[b"cloudEvents_type"] == b"counter.incremented"
    assert [parse_servicebus(b"".join(m.body), m.application_properties, registry=schemas)
            for m in received] == [r.envelope for r in sent]


def test_one_publisher_shared_by_worker_threads_sends_every_row_once(client, sb_publisher):
    batches = [outbox_rows("bb-shared", 5) for _ in range(4)]
    errors: list[BaseException] = []

    def publish(rows) -> None:
        try:
            sb_publisher.publish(rows)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(rows,)) for rows in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    received = receive_until(client, "bb-shared", lambda got: len(got) >= 20)
    assert sorted(m.message_id for m in received) == sorted(
        row.message_id for rows in batches for row in rows)


def test_a_session_enabled_queue_keeps_each_aggregate_in_its_own_ordered_session(client):
    publisher = ServiceBusPublisher(client, sessions={"bb-sessions"})
    now = datetime.now(UTC)
    sent = [OutboxRow.new(key, Envelope.new("counter.incremented", {"total": n, "by": 1},
                                            source="/tests", subject=key),
                          destination="bb-sessions", scheduled_at=None, created_at=now)
            for n in range(4) for key in ("acct-a", "acct-b")]
    publisher.publish(sent)
    publisher.close()
    with client.get_queue_receiver("bb-sessions", session_id="acct-b") as receiver:
        received = []
        deadline = time.monotonic() + 30
        while len(received) < 4 and time.monotonic() < deadline:
            received += receiver.receive_messages(max_message_count=10, max_wait_time=0.5)
        for message in received:
            receiver.complete_message(message)
    assert [m.message_id for m in received] == [
        row.message_id for row in sent if row.envelope.subject == "acct-b"]
    assert {m.session_id for m in received} == {"acct-b"}


def test_a_resent_row_is_dropped_by_duplicate_detection(client, sb_publisher):
    first, marker = outbox_rows("bb-dedupe", 2)
    sb_publisher.publish([first])
    sb_publisher.publish([first])  # the relay crashed before marking: same MessageId again
    sb_publisher.publish([marker])  # FIFO: once the marker is here, a duplicate would be too
    received = receive_until(client, "bb-dedupe",
                             lambda got: marker.message_id in {m.message_id for m in got})
    assert [m.message_id for m in received] == [first.message_id, marker.message_id]


def test_a_scheduled_row_is_held_until_its_enqueue_time(client, sb_publisher):
    due = datetime.now(UTC) + timedelta(seconds=2)
    [later] = outbox_rows("bb-scheduled", 1, scheduled_at=due)
    [now] = outbox_rows("bb-scheduled", 1)
    sb_publisher.publish([later, now])
    received = receive_until(client, "bb-scheduled", lambda got: len(got) == 2)
    assert [m.message_id for m in received] == [now.message_id, later.message_id]
    assert received[1].enqueued_time_utc >= due - timedelta(milliseconds=50)


@pytest.fixture
def sb_processor(table, schemas, sb_publisher):
    return MessageProcessor(table, OutboxRelay(table, sb_publisher), registry=schemas)


def sdk_consumer(processor, schemas, handler, partition_key=None):
    def consume(message):
        event = parse_servicebus(b"".join(message.body), message.application_properties,
                                 registry=schemas)
        return processor.handle(event, handler, partition_key=partition_key)
    return consume


def send(client, queue_name: str, body: bytes | str, message_id: str, **properties) -> None:
    with client.get_queue_sender(queue_name) as sender:
        sender.send_messages(ServiceBusMessage(body, message_id=message_id,
                                               application_properties=properties or None))


def read_state(table, partition):
    try:
        return json.loads(table.get_entity(partition, "state")["state"])
    except Exception:
        return None


def test_crash_between_commit_and_dispatch_redelivers_and_the_event_goes_out_once(
    client, table, schemas, sb_publisher, sb_processor
):
    sb_processor.relay.publisher = CrashingPublisher(sb_publisher, after_send=True)
    command = increment_command("c1", by=7)
    send(client, "bb-commands", command.to_json(), command.id)
    consumers = {"bb-commands": sdk_consumer(sb_processor, schemas, increment_to("bb-events"))}
    settled = pump(client, consumers, until=lambda done: len(done) == 2)
    assert [s for _, _, s in settled] == [Settlement.ABANDONED, Settlement.COMPLETED]
    assert settled[1][1].delivery_count > settled[0][1].delivery_count
    assert read_state(table, "c1") == {"total": 7}
    [marker] = outbox_rows("bb-events", 1)
    sb_publisher.publish([marker])
    events = receive_until(client, "bb-events",
                           lambda got: marker.message_id in {m.message_id for m in got})
    [event] = [m for m in events if m.message_id != marker.message_id]
    body = json.loads(b"".join(event.body))
    assert (body["causationid"], body["data"]) == (command.id, {"total": 7, "by": 7})


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "InvalidEncoding"),
    (json.dumps({"specversion": "1.0", "id": "x", "source": "/t", "type": "counter.increment",
                 "subject": "c1", "data": {"by": 0}}), "SchemaViolation"),
], ids=["not-json", "schema-violation"])
def test_poison_goes_to_the_dead_letter_queue_at_once_with_a_reason(
    client, table, schemas, sb_processor, body, reason
):
    before = rows(table)
    message_id = f"poison-{reason}"
    send(client, "bb-poison", body, message_id)
    consumers = {"bb-poison": sdk_consumer(sb_processor, schemas, increment)}
    settled = pump(client, consumers, until=lambda done: len(done) == 1)
    assert [s for _, _, s in settled] == [Settlement.DEAD_LETTERED]
    dead = receive_until(client, "bb-poison", lambda got: bool(got),
                         sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert [(m.message_id, m.dead_letter_reason) for m in dead] == [(message_id, reason)]
    assert dead[0].dead_letter_error_description
    assert rows(table) == before


def test_a_lasting_storage_outage_ends_in_the_dead_letter_queue_after_max_deliveries(
    client, storage_connection_string, table, schemas, sb_publisher
):
    with StorageOutage() as outage:
        transport = OutageTransport(outage)
        transport.fail_next(10_000)
        service = TableServiceClient.from_connection_string(
            storage_connection_string, transport=transport, retry_total=0)
        flaky = state_table(service, table.table_name, create=False)
        processor = MessageProcessor(flaky, OutboxRelay(flaky, sb_publisher), registry=schemas)
        command = increment_command("c1")
        send(client, "bb-outage", command.to_json(), command.id)
        consumers = {"bb-outage": sdk_consumer(processor, schemas, increment)}
        settled = pump(client, consumers,
                       until=lambda done: len(done) == MAX_DELIVERY_COUNT)
    assert [s for _, _, s in settled] == [Settlement.ABANDONED] * MAX_DELIVERY_COUNT
    dead = receive_until(client, "bb-outage", lambda got: bool(got),
                         sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    assert [(m.message_id, m.dead_letter_reason) for m in dead] == [
        (command.id, "MaxDeliveryCountExceeded")]
    assert rows(table) == {}


def increment_to(destination: str):
    """The counter handler, sending its event to `destination`."""
    def handler(event, uow):
        state = uow.load() or {"total": 0}
        state["total"] += event.data["by"]
        uow.save(state)
        uow.emit(event.follow("counter.incremented", {"total": state["total"],
                                                      "by": event.data["by"]},
                              source="/tests"), destination=destination)
    return handler


def test_a_saga_step_deadline_is_a_scheduled_message_that_triggers_compensation(
    client, table, schemas, sb_processor
):
    definition = SagaDefinition(
        name="reservation", source="/tests/orders", reply_to="bb-saga",
        alert_destination="bb-alerts",
        steps=(SagaStep("reserve", "stock.reserve", "bb-inventory", kind=StepKind.COMPENSABLE,
                        compensation="stock.release", timeout=timedelta(seconds=1)),
               SagaStep("ship", "shipping.ship", "bb-inventory", kind=StepKind.RETRIABLE)),
    )
    engine = SagaEngine(definition, registry=schemas)

    def inventory(command, uow):
        if command.type == "stock.release":  # the reservation itself is never answered
            uow.emit(reply_for(command, succeeded=True, source="/tests/inventory"),
                     destination=reply_destination(command))

    started = datetime.now(UTC)
    sb_processor.run("r1", lambda uow: engine.start(uow, {}), inbox_id="start-r1")
    consumers = {
        "bb-inventory": sdk_consumer(sb_processor, schemas, inventory, partition_key="inv"),
        "bb-saga": sdk_consumer(sb_processor, schemas, engine.handle),
    }
    pump(client, consumers, until=lambda _: SagaEngine.view(table, "r1").terminal)
    view = SagaEngine.view(table, "r1")
    assert (view.status, view.failure) == ("compensated", {"step": "reserve",
                                                           "reason": "timeout"})
    assert datetime.now(UTC) - started >= timedelta(seconds=1)
