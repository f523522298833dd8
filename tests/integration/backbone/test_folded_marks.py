"""The "dispatched" marks of published rows ride in the partition's next transaction, so a
handled message costs one read and one transaction; the tail is flushed when idle or swept.
(Folding itself, refused marks and marks beyond the room: tests/conformance/unit_of_work.py.)"""

from __future__ import annotations

from datetime import timedelta

from azure.data.tables import TableServiceClient

from agents.backbone import Envelope, OutboxRelay, UnitOfWork, run_unit_of_work, state_table
from agents.backbone.outbox import DISPATCHED, MAX_REMEMBERED_PER_PARTITION
from tests.integration.backbone.conftest import make_processor
from tests.integration.backbone.counter import (
    COMMANDS,
    EVENTS,
    INCREMENTED,
    PROJECTION,
    consumer,
    increment,
    increment_command,
    project,
)
from tests.integration.backbone.deliveries import Deliveries
from tests.integration.backbone.faults import OutageTransport, StorageOutage


def status(table, partition: str, row_key: str) -> str:
    return str(table.get_entity(partition, row_key)["Status"])


def test_a_handled_message_costs_one_read_and_one_transaction(processor, counter):
    outcomes = [processor.handle(increment_command(f"c{n % 2}"), increment) for n in range(6)]
    assert [outcome.requests for outcome in outcomes] == [2] * 6
    assert processor.relay.unmarked("c0") == outcomes[4].published


def test_the_tail_is_marked_once_its_partition_has_been_idle(processor, table, deliveries):
    [tail] = processor.handle(increment_command("c1"), increment).published
    deliveries.advance(processor.relay.flush_after)

    other = processor.handle(increment_command("c2"), increment)

    assert status(table, "c1", tail.row_key) == DISPATCHED
    assert processor.relay.unmarked("c1") == []
    assert processor.relay.unmarked("c2") == other.published
    assert other.requests == 3  # read, commit, and the idle partition's marks


def test_the_sweeper_marks_its_own_relays_tail_without_republishing(processor, deliveries):
    processor.handle(increment_command("c1"), increment)
    assert processor.relay.sweep(older_than=timedelta(0)) == []
    assert processor.relay.pending("c1") == []
    assert len(deliveries.sent[EVENTS]) == 1


def test_a_crash_after_publish_before_the_fold_leaves_rows_for_the_sweeper_and_one_effect(
    table, schemas, deliveries
):
    crashed = make_processor(table, deliveries, schemas)
    command = increment_command("c1", by=3)
    deliveries.send(COMMANDS, command.to_json().encode(), command.id)
    deliveries.run({COMMANDS: consumer(crashed, schemas, increment)})
    [left] = crashed.relay.pending("c1")  # published, its mark lost with the process

    restarted = make_processor(table, deliveries, schemas)
    deliveries.advance(timedelta(minutes=2))
    swept = restarted.relay.sweep(older_than=timedelta(minutes=1))
    deliveries.run({EVENTS: consumer(restarted, schemas, project, partition_key=PROJECTION)})

    assert [row.message_id for row in swept] == [left.message_id]
    assert restarted.relay.pending("c1") == []
    assert restarted.table.get_entity(PROJECTION, "state")["state"] == '{"seen":1,"sum":3}'



def emit(count: int):
    def decide(uow: UnitOfWork) -> None:
        for n in range(count):
            uow.emit(Envelope.new(INCREMENTED, {"total": n, "by": 1}, source="/tests",
                                  subject="big"), destination=EVENTS)
    return decide


def test_a_partition_with_more_unmarked_rows_than_the_bound_is_marked_at_once(processor):
    outcome = processor.run("big", emit(MAX_REMEMBERED_PER_PARTITION + 1), inbox_id="m1")
    assert len(outcome.published) == MAX_REMEMBERED_PER_PARTITION + 1
    assert processor.relay.unmarked("big") == []
    assert processor.relay.pending("big") == []



def test_an_idle_flush_that_storage_refuses_leaves_the_rows_to_the_sweeper(
    storage_connection_string, table, schemas
):
    with StorageOutage() as outage:
        transport = OutageTransport(outage)
        service = TableServiceClient.from_connection_string(
            storage_connection_string, transport=transport, retry_total=0)
        flaky_table = state_table(service, table.table_name, create=False)
        relay = OutboxRelay(flaky_table, Deliveries(), flush_after=timedelta(0))
        [row] = relay.publish(commit(table, schemas, "c1").outbox)
        transport.fail_next(1)

        relay.flush_idle()

        assert transport.failed == 1
        assert relay.unmarked("c1") == []
        assert [r.row_key for r in relay.pending("c1")] == [row.row_key]
        assert [r.row_key for r in relay.sweep(older_than=timedelta(0))] == [row.row_key]


def commit(table, schemas, counter_id: str):
    command = increment_command(counter_id)
    return run_unit_of_work(table, counter_id, lambda uow: increment(command, uow),
                            inbox_id=command.id, registry=schemas)
