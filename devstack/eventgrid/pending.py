"""Event Grid deliveries still owed, kept in `--data DIR` so retries survive a restart.

Every change (published, attempt failed, delivered or dead-lettered) rewrites one small
JSON file atomically: a local Event Grid holds few pending events, and a killed server
then loses none.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

FILE_NAME = "eventgrid-pending.json"


class Clock(Protocol):
    """Time as delivery sees it; tests inject one that moves only when told."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class PendingEvent:
    """One event owed to one subscription."""

    event: dict[str, Any]
    published: datetime
    attempts: int = 0
    last_status: int | None = None
    last_outcome: str = ""
    last_attempt: datetime | None = None
    due: datetime | None = None
    """When the next attempt is due (None: now)."""
    uid: str = field(default_factory=lambda: os.urandom(8).hex())

    def record(self) -> dict[str, Any]:
        fields = asdict(self)
        for name in ("published", "last_attempt", "due"):
            value = fields[name]
            fields[name] = value.isoformat() if value is not None else None
        return fields

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PendingEvent:
        times = {name: datetime.fromisoformat(record[name]) if record.get(name) else None
                 for name in ("published", "last_attempt", "due")}
        published = times.pop("published")
        assert published is not None
        return cls(event=record["event"], published=published, attempts=record["attempts"],
                   last_status=record["last_status"], last_outcome=record["last_outcome"],
                   uid=record["uid"], **times)


class PendingStore:
    """Pending events per `topic/subscription`; with no path, kept in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._pending: dict[str, dict[str, PendingEvent]] = {}
        if path is not None and path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            for key, records in saved.items():
                self._pending[key] = {r["uid"]: PendingEvent.from_record(r) for r in records}

    def loaded(self) -> dict[str, list[PendingEvent]]:
        return {key: list(events.values()) for key, events in self._pending.items()}

    def put(self, key: str, pending: PendingEvent) -> None:
        self._pending.setdefault(key, {})[pending.uid] = pending
        self._save()

    def remove(self, key: str, pending: PendingEvent) -> None:
        self._pending.get(key, {}).pop(pending.uid, None)
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        document = {key: [p.record() for p in events.values()]
                    for key, events in self._pending.items() if events}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document), encoding="utf-8")
        os.replace(temporary, self.path)
