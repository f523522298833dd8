"""ONE conformance suite for the store port, run against every adapter.

`UnitOfWorkConformance` is abstract (pytest does not collect it: no `Test` prefix); each
adapter's test module subclasses it and provides the `store` and `rows` fixtures:
`tests/integration/backbone/test_unit_of_work.py` (TableStore on Azurite) and
`tests/unit/backbone/test_memory_store.py` (MemoryStore). The tests speak only through the
port (`Store`, `UnitOfWork`, `run_unit_of_work`, `MessageProcessor`, `OutboxRelay`), so what
passes here holds for both: the in-memory adapter can be trusted in unit tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus.exceptions import MessageLockLostError

from agents.backbone import (
    ConcurrencyConflict,
    Disposition,
    Envelope,
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    PublishFailed,
    RequestCounter,
    SchemaRegistry,
    Settlement,
    StorageError,
    Store,
    TransactionTooLarge,
    UnitOfWork,
    classify,
    run_unit_of_work,
    settle,
)
from agents.backbone.outbox import DISPATCHED, MAX_REMEMBERED_PER_PARTITION, PENDING
from agents.backbone.store import Operation, Refusal, TransactionRefused, Write
from agents.backbone.tables import INBOX_PREFIX, OUTBOX_PREFIX, inbox_row, table_key
from tests.integration.backbone.counter import (
    INCREMENTED,
    increment,
    increment_command,
    register_counter_events,
)

Rows = Callable[[], dict[tuple[str, str], dict[str, object]]]
"""Every row in the store, keyed by (PartitionKey, RowKey): a snapshot to compare."""


class RecordingPublisher:
    """A `Publisher` that records what it was asked to publish."""

    def __init__(self) -> None:
        self.published: list[OutboxRow] = []

    def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.published.extend(rows)


class FailingPublisher:
    """A `Publisher` whose publish is the given function (e.g. one that raises)."""

    def __init__(self, publish: Callable[[Sequence[OutboxRow]], None]) -> None:
        self.publish = publish


class RecordingReceiver:
    """Records settlements in the shape of the SDK's receiver."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def complete_message(self, message: str) -> None:
        self.calls.append(("complete", message))

    def abandon_message(self, message: str) -> None:
        self.calls.append(("abandon", message))

    def dead_letter_message(self, message: str, reason: str | None = None,
                            error_description: str | None = None) -> None:
        self.calls.append(("dead-letter", message, str(reason), str(error_description)))


class LosingReceiver:
    """Settles like the SDK's receiver, but the first settlement is lost (the lock expired
    first), so the broker delivers the message again."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def complete_message(self, message: str) -> None:
        self._settle("complete", message)

    def abandon_message(self, message: str) -> None:
        self._settle("abandon", message)

    def dead_letter_message(self, message: str, reason: str | None = None,
                            error_description: str | None = None) -> None:
        self._settle("dead-letter", message, str(reason), str(error_description))

    def _settle(self, *call: str) -> None:
        self.calls.append(call)
        if len(self.calls) == 1:
            raise MessageLockLostError(message="lock expired before the settlement arrived")


def total(store: Store, counter_id: str) -> int:
    row = store.get(table_key(counter_id), "state")
    assert row is not None
    return int(json.loads(row.entity["state"])["total"])


def give_up_once(event: Envelope, uow: UnitOfWork) -> None:
    """A saga-like handler: the first time it gives up and asks for a dead letter; handled
    again, it finds the saga already failed and has nothing new to decide."""
    if uow.load() is None:
        uow.save({"status": "failed"})
        uow.request_dead_letter("CompensationExhausted", f"saga {uow.partition_key}: gave up")


def emit_many(count: int, pad: str) -> Callable[[UnitOfWork], None]:
    def decide(uow: UnitOfWork) -> None:
        for n in range(count):
            uow.emit(Envelope.new(INCREMENTED, {"total": n, "by": 1, "pad": pad},
                                  source="/tests", subject="big"), destination="q")
    return decide


class Clock:
    """An injected clock the unit of work and the relay read; tests move it."""

    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def row(partition: str, row_key: str, **values: object) -> dict[str, object]:
    return {"PartitionKey": partition, "RowKey": row_key, **values}


class UnitOfWorkConformance:
    """The unit-of-work contract (DESIGN 3.2-3.4), whatever the store behind it."""

    @pytest.fixture
    def counter(self) -> RequestCounter:
        return RequestCounter()

    @pytest.fixture
    def schemas(self) -> SchemaRegistry:
        chosen = SchemaRegistry()
        register_counter_events(chosen)
        return chosen

    @pytest.fixture
    def publisher(self) -> RecordingPublisher:
        return RecordingPublisher()

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def processor(self, store: Store, publisher: RecordingPublisher, schemas: SchemaRegistry,
                  counter: RequestCounter, clock: Clock) -> MessageProcessor:
        return MessageProcessor(store, OutboxRelay(store, publisher, now=clock),
                                registry=schemas, counter=counter, now=clock)

    # The port itself: ETags, all-or-nothing transactions, refusals by index, queries.

    def test_every_write_gives_the_row_a_new_etag_and_a_stale_etag_is_refused(
        self, store: Store,
    ) -> None:
        [created] = store.submit([Operation(Write.INSERT, row("p", "r", n=1))])
        [merged] = store.submit([Operation(Write.MERGE, row("p", "r", m=2), created)])
        assert merged != created
        with pytest.raises(TransactionRefused) as refused:
            store.submit([Operation(Write.REPLACE, row("p", "r", n=3), created)])
        assert (refused.value.index, refused.value.refusal) == (0, Refusal.CHANGED)
        stored = store.get("p", "r")
        assert stored is not None
        assert (stored.etag, stored.entity["n"], stored.entity["m"]) == (merged, 1, 2)

    def test_replace_drops_the_properties_it_does_not_name_and_merge_keeps_them(
        self, store: Store,
    ) -> None:
        [etag] = store.submit([Operation(Write.INSERT, row("p", "r", a="x", b="y"))])
        [etag] = store.submit([Operation(Write.REPLACE, row("p", "r", a="z"), etag)])
        store.submit([Operation(Write.MERGE, row("p", "r", c="w"), etag)])
        stored = store.get("p", "r")
        assert stored is not None
        assert {k: v for k, v in stored.entity.items() if k in "abc"} == {"a": "z", "c": "w"}

    def test_a_refused_transaction_names_the_operation_and_applies_none_of_it(
        self, store: Store, rows: Rows,
    ) -> None:
        store.submit([Operation(Write.INSERT, row("p", "a"))])
        before = rows()
        with pytest.raises(TransactionRefused) as refused:
            store.submit([Operation(Write.INSERT, row("p", "b")),
                          Operation(Write.INSERT, row("p", "a"))])
        assert (refused.value.index, refused.value.refusal) == (1, Refusal.EXISTS)
        assert isinstance(refused.value, ConcurrencyConflict)
        assert rows() == before

    def test_writing_or_deleting_a_missing_row_is_refused_as_missing(
        self, store: Store,
    ) -> None:
        [etag] = store.submit([Operation(Write.INSERT, row("p", "r"))])
        store.submit([Operation(Write.DELETE, row("p", "r"), etag)])
        assert store.get("p", "r") is None
        for write in (Write.MERGE, Write.DELETE):
            with pytest.raises(TransactionRefused) as refused:
                store.submit([Operation(write, row("p", "r"), etag)])
            assert refused.value.refusal is Refusal.MISSING

    @pytest.mark.parametrize("value", [[1, 2], {"a": 1}, 2**31, -(2**31) - 1])
    def test_a_value_a_table_cannot_hold_is_refused_naming_the_property(
        self, store: Store, rows: Rows, value: object,
    ) -> None:
        with pytest.raises(StorageError, match="property amount of row r"):
            store.submit([Operation(Write.INSERT, row("p", "r", amount=value))])
        assert rows() == {}

    def test_a_none_property_is_not_stored_nor_merged_and_a_naive_time_reads_back_in_utc(
        self, store: Store,
    ) -> None:
        [etag] = store.submit([Operation(Write.INSERT, row(
            "p", "r", gone=None, kept="x", big=2**31 - 1, at=datetime(2026, 1, 1)))])
        store.submit([Operation(Write.MERGE, row("p", "r", kept=None), etag)])
        stored = store.get("p", "r")
        assert stored is not None
        assert "gone" not in stored.entity
        assert (stored.entity["kept"], stored.entity["big"]) == ("x", 2**31 - 1)
        assert stored.entity["at"] == datetime(2026, 1, 1, tzinfo=UTC)

    def test_a_query_filters_by_prefix_partition_value_and_time_in_key_order(
        self, store: Store, clock: Clock,
    ) -> None:
        early, late = clock(), clock() + timedelta(hours=1)
        for partition in ("q2", "q1"):
            store.submit([
                Operation(Write.INSERT, row(partition, "outbox|b", Status="pending", At=late)),
                Operation(Write.INSERT, row(partition, "outbox|a", Status="pending", At=early)),
                Operation(Write.INSERT, row(partition, "outbox|c", Status="done", At=early)),
                Operation(Write.INSERT, row(partition, "inbox|a", At=early)),
            ])

        def keys(**criteria: Any) -> list[tuple[str, str]]:
            return [(r.entity["PartitionKey"], r.entity["RowKey"])
                    for r in store.query(OUTBOX_PREFIX, **criteria)]

        assert keys() == [("q1", "outbox|a"), ("q1", "outbox|b"), ("q1", "outbox|c"),
                          ("q2", "outbox|a"), ("q2", "outbox|b"), ("q2", "outbox|c")]
        assert keys(partition_key="q2", equals={"Status": "pending"}) == [
            ("q2", "outbox|a"), ("q2", "outbox|b")]
        assert keys(equals={"Status": "pending"}, before=("At", early + timedelta(minutes=1))
                    ) == [("q1", "outbox|a"), ("q2", "outbox|a")]
        assert [r.entity["RowKey"] for r in store.query(INBOX_PREFIX)] == ["inbox|a"] * 2

    # The unit of work over the port.

    def test_state_inbox_and_outbox_commit_in_one_transaction(
        self, store: Store, rows: Rows, schemas: SchemaRegistry, counter: RequestCounter,
    ) -> None:
        command = increment_command("c1", by=3)
        with counter.scope() as scope:
            committed = run_unit_of_work(store, "c1", lambda uow: increment(command, uow),
                                         inbox_id=command.id, registry=schemas)
        assert not committed.duplicate
        assert committed.result == 3
        kinds = {key[1].split("|")[0]: entity["Kind"] for key, entity in rows().items()}
        assert kinds == {"state": "state", "inbox": "inbox", "outbox": "outbox"}
        assert scope.count == 2  # one read (state missing) + ONE transaction for all three

    def test_duplicate_delivery_is_recognised_and_has_no_second_effect(
        self, store: Store, processor: MessageProcessor, publisher: RecordingPublisher,
    ) -> None:
        command = increment_command("c1", by=5)
        first = processor.handle(command, increment)
        second = processor.handle(command, increment)
        third = processor.handle(command, increment)
        assert (first.duplicate, second.duplicate, third.duplicate) == (False, True, True)
        assert total(store, "c1") == 5
        assert [row.envelope.type for row in publisher.published] == [INCREMENTED]

    def test_every_message_delivered_three_times_has_exactly_one_effect(
        self, store: Store, processor: MessageProcessor, publisher: RecordingPublisher,
    ) -> None:
        commands = [increment_command(f"c{n % 4}", by=n + 1) for n in range(20)]
        for _ in range(3):
            for command in commands:
                processor.handle(command, increment)
        for n in range(4):
            assert total(store, f"c{n}") == sum(
                c.data["by"] for c in commands if c.subject == f"c{n}")
        published_ids = [row.message_id for row in publisher.published]
        assert len(published_ids) == len(set(published_ids)) == 20

    def test_a_dead_letter_decided_for_a_message_is_decided_again_after_a_lost_settlement(
        self, processor: MessageProcessor,
    ) -> None:
        command = increment_command("s1")
        receiver = LosingReceiver()
        with pytest.raises(MessageLockLostError):
            settle(receiver, "delivery 1", lambda: processor.handle(command, give_up_once))
        redelivered = settle(receiver, "delivery 2",
                             lambda: processor.handle(command, give_up_once))
        assert redelivered is Settlement.DEAD_LETTERED
        assert receiver.calls == [
            ("dead-letter", "delivery 1", "CompensationExhausted", "saga s1: gave up"),
            ("dead-letter", "delivery 2", "CompensationExhausted", "saga s1: gave up"),
        ]

    def test_a_dead_letter_decided_before_dispatch_failed_arrives_on_redelivery(
        self, processor: MessageProcessor, publisher: RecordingPublisher,
    ) -> None:
        command = increment_command("s1")

        def give_up_and_alert(event: Envelope, uow: UnitOfWork) -> None:
            give_up_once(event, uow)
            uow.emit(event.follow(INCREMENTED, {"total": 0, "by": 1}, source="/tests"),
                     destination="alerts")

        def publish_fails_once(rows: Sequence[OutboxRow]) -> None:
            processor.relay.publisher = publisher  # the next delivery publishes
            raise PublishFailed("broker unreachable after the commit")

        processor.relay.publisher = FailingPublisher(publish_fails_once)
        receiver = RecordingReceiver()
        first = settle(receiver, "delivery 1",
                       lambda: processor.handle(command, give_up_and_alert))
        second = settle(receiver, "delivery 2",
                        lambda: processor.handle(command, give_up_and_alert))
        assert (first, second) == (Settlement.ABANDONED, Settlement.DEAD_LETTERED)
        assert receiver.calls[1] == (
            "dead-letter", "delivery 2", "CompensationExhausted", "saga s1: gave up")
        assert [row.destination for row in publisher.published] == ["alerts"]

    def test_a_completed_message_is_completed_again_after_a_lost_settlement(
        self, processor: MessageProcessor,
    ) -> None:
        command = increment_command("s1")
        processor.run("s1", lambda uow: uow.save({"status": "failed"}), inbox_id="setup")
        receiver = LosingReceiver()

        def dead_letter_if_new(event: Envelope, uow: UnitOfWork) -> None:
            state = uow.load()
            assert state is not None
            if state["status"] == "failed":  # the first delivery completes...
                uow.save({"status": "done"})
            else:  # ...and its redelivery, re-deciding, would now ask for a dead letter
                uow.request_dead_letter("Late", "decided differently on redelivery")

        with pytest.raises(MessageLockLostError):
            settle(receiver, "delivery 1",
                   lambda: processor.handle(command, dead_letter_if_new))
        redelivered = settle(receiver, "delivery 2",
                             lambda: processor.handle(command, dead_letter_if_new))
        assert redelivered is Settlement.COMPLETED
        assert receiver.calls == [("complete", "delivery 1"), ("complete", "delivery 2")]

    def test_racing_handlers_one_wins_the_other_retries_on_412_and_both_effects_land(
        self, store: Store, schemas: SchemaRegistry,
    ) -> None:
        barrier = threading.Barrier(2, timeout=30)
        attempts: dict[str, int] = {"a": 0, "b": 0}
        errors: list[BaseException] = []
        seed = increment_command("race", by=1)
        run_unit_of_work(store, "race", lambda uow: increment(seed, uow), inbox_id=seed.id,
                         registry=schemas)

        def racer(name: str, by: int) -> None:
            command = increment_command("race", by=by)

            def decide(uow: UnitOfWork) -> int:
                attempts[name] += 1
                state = uow.load()
                if attempts[name] == 1:
                    barrier.wait()  # both have read the same ETag before either commits
                assert state is not None
                return increment(command, uow)

            try:
                run_unit_of_work(store, "race", decide, inbox_id=command.id, registry=schemas)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=racer, args=("a", 10)),
                   threading.Thread(target=racer, args=("b", 100))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert sorted(attempts.values()) == [1, 2]
        assert total(store, "race") == 111

    def test_412_on_every_attempt_gives_up_with_a_transient_concurrency_conflict(
        self, store: Store, schemas: SchemaRegistry,
    ) -> None:
        seed = increment_command("hot", by=1)
        run_unit_of_work(store, "hot", lambda uow: increment(seed, uow), inbox_id=seed.id,
                         registry=schemas)
        command = increment_command("hot", by=1)
        calls = []

        def decide_while_someone_else_writes(uow: UnitOfWork) -> int:
            calls.append(1)
            result = increment(command, uow)
            # a competing writer changes the state row's ETag every time
            store.submit([Operation(Write.MERGE, {"PartitionKey": "hot", "RowKey": "state"})])
            return result

        with pytest.raises(ConcurrencyConflict) as raised:
            run_unit_of_work(store, "hot", decide_while_someone_else_writes,
                             inbox_id=command.id, attempts=3, registry=schemas)
        assert len(calls) == 3
        assert classify(raised.value) is Disposition.RETRY
        assert total(store, "hot") == 1

    def test_creating_an_aggregate_twice_concurrently_is_a_conflict_not_an_overwrite(
        self, store: Store, schemas: SchemaRegistry,
    ) -> None:
        first, second = increment_command("new", by=1), increment_command("new", by=2)
        stale = UnitOfWork(store, "new", inbox_id=second.id, registry=schemas)
        increment(second, stale)  # read "missing" before the first creates it
        run_unit_of_work(store, "new", lambda uow: increment(first, uow), inbox_id=first.id,
                         registry=schemas)
        with pytest.raises(ConcurrencyConflict):
            stale.commit()
        assert total(store, "new") == 1

    @pytest.mark.parametrize(("count", "pad", "limit"), [
        (100, "x", "limit is 100"),             # inbox + 100 outbox rows = 101 entities
        # 40 rows of 20k "€": each property 40 KB in UTF-16, but ~4.8 MB as escaped JSON
        (40, "\u20ac" * 20_000, "limit is 4194304"),
        (1, "x" * 40_000, "limit is 65536"),    # one property of 80 KB in UTF-16
    ])
    def test_transactions_beyond_the_limits_raise_a_clear_poison_error_and_write_nothing(
        self, store: Store, rows: Rows, schemas: SchemaRegistry, count: int, pad: str,
        limit: str,
    ) -> None:
        with pytest.raises(TransactionTooLarge, match=limit) as raised:
            run_unit_of_work(store, "big", emit_many(count, pad), inbox_id="m1",
                             registry=schemas)
        assert classify(raised.value) is Disposition.DEAD_LETTER
        assert rows() == {}

    def test_the_largest_transaction_within_the_limits_commits(
        self, store: Store, rows: Rows, schemas: SchemaRegistry,
    ) -> None:
        committed = run_unit_of_work(store, "big", emit_many(99, "x"), inbox_id="m1",
                                     registry=schemas)
        assert len(committed.outbox) == 99
        assert len(rows()) == 100

    def test_storage_requests_per_handled_message_are_counted(
        self, processor: MessageProcessor,
    ) -> None:
        fresh = processor.handle(increment_command("c1"), increment)
        command = increment_command("c1")
        existing = processor.handle(command, increment)
        duplicate = processor.handle(command, increment)
        assert fresh.requests == 2      # read (missing), commit
        assert existing.requests == 2   # read state, commit (+ the marks of `fresh`)
        # read state, refused commit, read the inbox marker's disposition, query pending rows
        assert duplicate.requests == 4

    def test_ids_and_subjects_with_characters_tables_forbid_work_and_dedupe(
        self, store: Store, processor: MessageProcessor,
    ) -> None:
        command = Envelope.new("counter.increment", {"by": 2}, source="/tests",
                               subject="tenant/7#counter?", id="msg/1#a?b\\c")
        first = processor.handle(command, increment)
        again = processor.handle(command, increment)
        assert (first.duplicate, again.duplicate) == (False, True)
        assert total(store, "tenant/7#counter?") == 2
        assert store.get("tenant%2F7%23counter%3F", "state") is not None
        assert processor.relay.flush() == 1
        assert processor.relay.pending("tenant/7#counter?") == []

    def test_the_same_message_handled_concurrently_twice_has_one_effect(
        self, store: Store, rows: Rows, schemas: SchemaRegistry,
    ) -> None:
        barrier = threading.Barrier(2, timeout=30)
        command = increment_command("twin", by=5)
        results: list[bool] = []
        errors: list[BaseException] = []

        def deliver() -> None:
            first_attempt = [True]

            def decide(uow: UnitOfWork) -> int:
                result = increment(command, uow)
                if first_attempt[0]:
                    first_attempt[0] = False
                    barrier.wait()  # both deliveries decided before either commits
                return result

            try:
                results.append(run_unit_of_work(store, "twin", decide, inbox_id=command.id,
                                                registry=schemas).duplicate)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert sorted(results) == [False, True]
        assert total(store, "twin") == 5
        assert len([k for k in rows() if k[1].startswith("outbox|")]) == 1

    # The outbox relay over the port: marks folded into the next commit, sweep, retention.

    def test_the_next_commit_in_a_partition_marks_the_previous_messages_rows(
        self, store: Store, processor: MessageProcessor,
    ) -> None:
        [first] = processor.handle(increment_command("c1"), increment).published
        assert status(store, "c1", first.row_key) == PENDING
        second = processor.handle(increment_command("c1"), increment)
        assert second.requests == 2  # the mark rode in the commit
        assert status(store, "c1", first.row_key) == DISPATCHED
        assert status(store, "c1", second.published[0].row_key) == PENDING
        assert processor.relay.unmarked("c1") == second.published

    def test_a_mark_refused_because_the_row_changed_is_dropped_and_the_commit_goes_through(
        self, store: Store, processor: MessageProcessor, publisher: RecordingPublisher,
    ) -> None:
        [published] = processor.handle(increment_command("c1"), increment).published
        other_relay = OutboxRelay(store, publisher)
        other_relay.dispatch(other_relay.pending("c1"))  # e.g. a concurrent redelivery
        marked = store.get("c1", published.row_key)
        assert marked is not None

        again = processor.handle(increment_command("c1", by=4), increment)

        assert again.requests == 3  # read, the refused commit, the commit without that mark
        assert total(store, "c1") == 5
        assert store.get("c1", published.row_key) == marked
        assert processor.relay.unmarked("c1") == again.published

    def test_marks_beyond_the_room_left_in_a_full_transaction_are_not_lost(
        self, store: Store, processor: MessageProcessor,
    ) -> None:
        processor.run("big", emit_many(MAX_REMEMBERED_PER_PARTITION, "x"), inbox_id="m1")
        processor.run("big", emit_many(90, "x"), inbox_id="m2")  # room for 9 marks only
        pending = {r.row_key for r in processor.relay.pending("big")}
        unmarked = {r.row_key for r in processor.relay.unmarked("big")}
        assert pending == unmarked  # marked in storage, or still remembered: none forgotten
        assert 0 < len(unmarked) <= MAX_REMEMBERED_PER_PARTITION
        assert processor.relay.flush() == len(unmarked)
        assert processor.relay.pending("big") == []

    def test_the_sweeper_publishes_rows_a_crash_left_pending_and_only_those(
        self, store: Store, schemas: SchemaRegistry, publisher: RecordingPublisher,
        clock: Clock,
    ) -> None:
        crashed = [run_unit_of_work(store, f"c{n}", lambda uow: increment(
            increment_command(uow.partition_key), uow), inbox_id=f"m{n}", registry=schemas,
            now=clock) for n in range(3)]  # committed, never published
        clock.advance(timedelta(minutes=5))
        run_unit_of_work(store, "young", lambda uow: increment(increment_command("young"), uow),
                         inbox_id="m-young", registry=schemas, now=clock)
        relay = OutboxRelay(store, publisher, now=clock)

        swept = relay.sweep(older_than=timedelta(minutes=1))

        assert sorted(r.message_id for r in swept) == sorted(
            c.outbox[0].message_id for c in crashed)
        assert [r.message_id for r in publisher.published] == [r.message_id for r in swept]
        assert all(relay.pending(f"c{n}") == [] for n in range(3))
        assert len(relay.pending("young")) == 1
        assert relay.sweep(older_than=timedelta(minutes=1)) == []

    def test_retention_deletes_old_inbox_markers_and_dispatched_rows_only(
        self, store: Store, rows: Rows, processor: MessageProcessor, schemas: SchemaRegistry,
        clock: Clock,
    ) -> None:
        command = increment_command("c1")
        done = processor.handle(command, increment)
        processor.relay.flush()
        run_unit_of_work(store, "c2", lambda uow: increment(increment_command("c2"), uow),
                         inbox_id="never-sent", registry=schemas, now=clock)
        clock.advance(timedelta(days=8))
        processor.handle(increment_command("c3"), increment)  # recent: kept
        processor.relay.flush()
        before = rows()

        report = processor.relay.purge(older_than=timedelta(days=7))

        assert set(before) - set(rows()) == {
            ("c1", inbox_row(command.id)),
            ("c1", done.published[0].row_key), ("c2", "inbox|never-sent")}
        assert (report.inbox_markers, report.dispatched_rows) == (2, 1)
        assert len(processor.relay.pending("c2")) == 1  # pending is never deleted
        assert {key for key in rows() if key[1] == "state"} == {
            ("c1", "state"), ("c2", "state"), ("c3", "state")}


def status(store: Store, partition: str, row_key: str) -> str:
    stored = store.get(partition, row_key)
    assert stored is not None
    return str(stored.entity["Status"])

