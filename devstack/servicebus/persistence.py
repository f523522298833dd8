"""`--data DIR`: the broker's messages, saved when devstack stops and loaded at start.

Locks are not kept: a message locked at shutdown is available again after a restart.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Any

from devstack.amqp.codec import decode_value, encoded
from devstack.servicebus.broker import Broker, MessageEntity
from devstack.servicebus.store import StoredMessage

log = logging.getLogger("devstack.servicebus")
SNAPSHOT = "servicebus.json"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _amqp(text: str) -> Any:
    return decode_value(base64.b64decode(text))[0]


def _message_record(message: StoredMessage) -> dict[str, Any]:
    return {
        "sequence_number": message.sequence_number,
        "bare": _b64(message.bare),
        "annotations": _b64(encoded(message.annotations)),
        "session_id": message.session_id,
        "ttl_ms": message.ttl_ms,
        "durable": message.durable,
        "priority": message.priority,
        "enqueued_ms": message.enqueued_ms,
        "expires_ms": message.expires_ms,
        "scheduled_ms": message.scheduled_ms,
        "attempts": message.attempts,
        "deferred": message.deferred,
        "dead_letter_source": message.dead_letter_source,
    }


def _message(record: dict[str, Any]) -> StoredMessage:
    message = StoredMessage(
        bare=base64.b64decode(record["bare"]),
        annotations=_amqp(record["annotations"]) or {},
        session_id=record["session_id"],
        ttl_ms=record["ttl_ms"],
        durable=record["durable"],
        priority=record["priority"],
    )
    message.sequence_number = record["sequence_number"]
    message.enqueued_ms = record["enqueued_ms"]
    message.expires_ms = record["expires_ms"]
    message.scheduled_ms = record["scheduled_ms"]
    message.attempts = record["attempts"]
    message.deferred = record["deferred"]
    message.dead_letter_source = record["dead_letter_source"]
    return message


def save_snapshot(broker: Broker, directory: Path) -> None:
    entities: dict[str, Any] = {}
    for entity in broker.iter_entities():
        entities[entity.path] = {
            "messages": [_message_record(m) for m in entity.messages.values()],
            "sessions": {
                s.session_id: _b64(s.state) for s in entity.sessions.values()
                if s.state is not None
            },
        }
    scheduled = [
        {"path": path, "due_ms": due, "message": _message_record(message)}
        for due, sequence_number, path, message in broker.scheduled_entries()
    ]
    snapshot = {"last_sequence": broker.last_sequence, "entities": entities,
                "scheduled": scheduled}
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / (SNAPSHOT + ".tmp")
    temporary.write_text(json.dumps(snapshot), encoding="utf-8")
    os.replace(temporary, directory / SNAPSHOT)


def load_snapshot(broker: Broker, directory: Path) -> None:
    path = directory / SNAPSHOT
    if not path.exists():
        return
    snapshot = json.loads(path.read_text(encoding="utf-8"))
    broker.last_sequence = max(broker.last_sequence, int(snapshot["last_sequence"]))
    for entity_path, saved in snapshot["entities"].items():
        entity = broker.entity(entity_path)
        if entity is None:
            log.warning("dropping saved messages of %s: not in the config any more", entity_path)
            continue
        for record in saved["messages"]:
            entity.restore(_message(record))
        for session_id, state in saved["sessions"].items():
            entity.restore_session_state(session_id, base64.b64decode(state))
    for item in snapshot["scheduled"]:
        broker.restore_scheduled(item["path"], _message(item["message"]), int(item["due_ms"]))


__all__ = ["MessageEntity", "load_snapshot", "save_snapshot"]
