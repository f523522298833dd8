"""One partition's append-only event log: sequence numbers, offsets, enqueued times."""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from devstack.eventhubs.amqp_message import stamp_event
from devstack.eventhubs.positions import (
    END_OF_STREAM,
    START_OF_STREAM,
    PositionField,
    StartPosition,
)

# Journal record: enqueued time (ms, signed) and length of the stored event, then its bytes.
_RECORD_HEADER = struct.Struct(">qI")


@dataclass(frozen=True)
class PartitionProperties:
    """What `$management` READ of a partition reports."""

    hub: str
    partition_id: str
    beginning_sequence_number: int
    last_enqueued_sequence_number: int
    last_enqueued_offset: str
    last_enqueued_time_ms: int
    is_empty: bool


class PartitionLog:
    """Events of one partition in arrival order, stored as the bytes receivers get.

    Offsets are byte positions in the log, like the service's; sequence numbers start at 0.
    With a journal path, every append is also written there and the log reloads from it.
    """

    def __init__(self, hub: str, partition_id: str, journal: Path | None = None) -> None:
        self.hub = hub
        self.partition_id = partition_id
        self._events: list[bytes] = []
        self._offsets: list[int] = []
        self._enqueued_ms: list[int] = []
        self._next_offset = 0
        self.listeners: set[Callable[[], None]] = set()
        """Called after every append (e.g. receivers waiting for new events)."""
        self._journal: BinaryIO | None = None
        if journal is not None:
            self._replay(journal)
            self._journal = journal.open("ab")

    def _replay(self, journal: Path) -> None:
        if not journal.exists():
            journal.parent.mkdir(parents=True, exist_ok=True)
            return
        data = journal.read_bytes()
        position = 0
        while position + _RECORD_HEADER.size <= len(data):
            enqueued_ms, length = _RECORD_HEADER.unpack_from(data, position)
            start = position + _RECORD_HEADER.size
            if start + length > len(data):
                break
            self._store(data[start : start + length], enqueued_ms)
            position = start + length
        if position < len(data):
            # A record cut short by a crash mid-write: drop it so appends follow whole records.
            with journal.open("r+b") as file:
                file.truncate(position)

    def _store(self, event: bytes, enqueued_ms: int) -> None:
        self._events.append(event)
        self._offsets.append(self._next_offset)
        self._enqueued_ms.append(enqueued_ms)
        self._next_offset += len(event)

    def __len__(self) -> int:
        return len(self._events)

    def append(self, messages: Sequence[bytes], partition_key: str | None, now_ms: int) -> None:
        """Store `messages` (complete encoded AMQP messages) with the service annotations.

        All or nothing: if one message is malformed (InvalidMessage), none is stored.
        """
        # Enqueued times never go backwards, so time positions can use binary search.
        enqueued_ms = max(now_ms, self._enqueued_ms[-1]) if self._enqueued_ms else now_ms
        events = []
        offset = self._next_offset
        for index, message in enumerate(messages, start=len(self._events)):
            event = stamp_event(
                message,
                sequence_number=index,
                offset=offset,
                enqueued_time_ms=enqueued_ms,
                partition_key=partition_key,
            )
            events.append(event)
            offset += len(event)
        for event in events:
            self._store(event, enqueued_ms)
        if self._journal is not None:
            self._journal.write(
                b"".join(_RECORD_HEADER.pack(enqueued_ms, len(event)) + event for event in events)
            )
            self._journal.flush()
        for listener in list(self.listeners):
            listener()

    def start_index(self, position: StartPosition) -> int:
        """Index of the first event a receiver starting at `position` gets."""
        inclusive = position.inclusive
        if position.field is PositionField.OFFSET:
            if position.value == START_OF_STREAM:
                return 0
            if position.value == END_OF_STREAM:
                return len(self._events)
            offset = int(position.value)
            find = bisect_left if inclusive else bisect_right
            return find(self._offsets, offset)
        if position.field is PositionField.SEQUENCE_NUMBER:
            index = int(position.value) if inclusive else int(position.value) + 1
            return min(max(index, 0), len(self._events))
        find = bisect_left if inclusive else bisect_right
        return find(self._enqueued_ms, int(position.value))

    def read(self, index: int, max_count: int) -> list[bytes]:
        """Up to `max_count` stored events from `index` on."""
        return self._events[index : index + max_count]

    def properties(self) -> PartitionProperties:
        if not self._events:
            return PartitionProperties(self.hub, self.partition_id, 0, -1, START_OF_STREAM, 0, True)
        return PartitionProperties(
            hub=self.hub,
            partition_id=self.partition_id,
            beginning_sequence_number=0,
            last_enqueued_sequence_number=len(self._events) - 1,
            last_enqueued_offset=str(self._offsets[-1]),
            last_enqueued_time_ms=self._enqueued_ms[-1],
            is_empty=False,
        )

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
