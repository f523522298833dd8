"""The sweeper publishes stale pending rows; retention deletes only old markers and
dispatched rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.backbone import OutboxRelay, run_unit_of_work
from tests.integration.backbone.conftest import rows
from tests.integration.backbone.counter import EVENTS, increment, increment_command


def commit_without_dispatch(table, schemas, counter_id: str, *, at: datetime | None = None):
    """Commit a handled command as if the process died before dispatching its outbox."""
    command = increment_command(counter_id)
    return run_unit_of_work(table, counter_id, lambda uow: increment(command, uow),
                            inbox_id=command.id, registry=schemas,
                            now=(lambda: at) if at else None)


def test_sweeper_publishes_rows_left_pending_and_marks_them_dispatched(
    table, schemas, broker, publisher
):
    stale = [commit_without_dispatch(table, schemas, f"c{n}") for n in range(3)]
    relay = OutboxRelay(table, publisher, now=lambda: datetime.now(UTC) + timedelta(minutes=5))
    swept = relay.sweep(older_than=timedelta(minutes=1))
    assert sorted(r.message_id for r in swept) == sorted(c.outbox[0].message_id for c in stale)
    assert broker.queue(EVENTS).sent == 3
    assert all(relay.pending(f"c{n}") == [] for n in range(3))
    assert relay.sweep(older_than=timedelta(minutes=1)) == []
    assert broker.queue(EVENTS).sent == 3


def test_sweeper_leaves_rows_younger_than_the_threshold(table, schemas, publisher):
    commit_without_dispatch(table, schemas, "fresh")
    relay = OutboxRelay(table, publisher)
    assert relay.sweep(older_than=timedelta(minutes=1)) == []
    assert len(relay.pending("fresh")) == 1


def test_retention_deletes_old_inbox_markers_and_dispatched_rows_only(
    table, schemas, processor, publisher
):
    now = datetime.now(UTC)
    old = now - timedelta(days=10)
    old_done = processor.run("c1", lambda uow: increment(increment_command("c1"), uow),
                             inbox_id="old-message")
    commit_without_dispatch(table, schemas, "c2", at=old)
    processor.handle(increment_command("c3"), increment)  # recent: kept
    processor.relay.flush()  # each partition's tail marked dispatched now
    relay = OutboxRelay(table, publisher, now=lambda: now + timedelta(days=7))
    backdate_inbox(table, "c1", "old-message", old)
    backdate_dispatch(table, "c1", old_done.published[0].row_key, old)
    before = rows(table)

    report = relay.purge(older_than=timedelta(days=7, hours=1))

    deleted = set(before) - set(rows(table))
    assert deleted == {("c1", "inbox|old-message"), ("c1", old_done.published[0].row_key),
                       ("c2", f"inbox|{never_sent_inbox(before, 'c2')}")}
    assert (report.inbox_markers, report.dispatched_rows) == (2, 1)
    assert len(relay.pending("c2")) == 1  # a pending row is never deleted, however old
    assert {key for key in rows(table) if key[1] == "state"} == {
        ("c1", "state"), ("c2", "state"), ("c3", "state")}


def backdate_inbox(table, partition: str, message_id: str, when: datetime) -> None:
    table.update_entity({"PartitionKey": partition, "RowKey": f"inbox|{message_id}",
                         "ReceivedAt": when})


def backdate_dispatch(table, partition: str, row_key: str, when: datetime) -> None:
    table.update_entity({"PartitionKey": partition, "RowKey": row_key, "DispatchedAt": when})


def never_sent_inbox(snapshot, partition: str) -> str:
    [key] = [k for k in snapshot if k[0] == partition and k[1].startswith("inbox|")]
    return key[1].removeprefix("inbox|")


def test_leaving_a_relay_marks_the_rows_it_published_but_had_not_marked(table, processor):
    processor.handle(increment_command("c1"), increment)
    assert processor.relay.pending("c1") != []  # published, its mark still remembered
    with processor.relay as relay:
        pass
    assert (relay.unmarked("c1"), relay.pending("c1")) == ([], [])
