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

import pytest
from azure.servicebus.exceptions import MessageLockLostError

from agents.backbone import (
    ConcurrencyConflict,
    Disposition,
    Envelope,
    MessageProcessor,
    OutboxRelay,
    OutboxRow,
    RequestCounter,
    SchemaRegistry,
    Settlement,
    Store,
    TransactionTooLarge,
    UnitOfWork,
    classify,
    run_unit_of_work,
    settle,
)
from agents.backbone.store import Operation, Write
from agents.backbone.tables import table_key
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
    def processor(self, store: Store, publisher: RecordingPublisher, schemas: SchemaRegistry,
                  counter: RequestCounter) -> MessageProcessor:
        return MessageProcessor(store, OutboxRelay(store, publisher), registry=schemas,
                                counter=counter)

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
