"""Event Grid dead-letter blobs: list, show, replay through `EventGridPublisherClient`.

Event Grid writes `SUBSCRIPTION-NAME-UPPER/YYYY/M/D/H/<guid>.json` into the subscription's
dead-letter container, each a JSON array of events carrying `deadLetterReason`,
`deliveryAttempts`, `lastDeliveryOutcome`, `lastHttpStatusCode`, `publishTime` and
`lastDeliveryAttemptTime`. Replay strips those, publishes the events to the subscription's
topic, then records `replayedAt` / `replayCount` in the blob's metadata (ETag-guarded), so a
second replay skips the blob. Publishing to the topic reaches every subscription whose filter
matches; their inboxes absorb an event id they already handled.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent
from azure.storage.blob import ContainerClient

from agents.ops.config import Catalogue, EventGridSubscription, OpsError
from agents.ops.connections import Connections

DEAD_LETTER_FIELDS = ("deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome",
                      "lastHttpStatusCode", "publishTime", "lastDeliveryAttemptTime")
# Filled in by Event Grid on publish for its own schema; a republish must not carry them.
GRID_FILLED_FIELDS = ("topic", "metadataVersion")
REPLAYED_AT = "replayedAt"
REPLAY_COUNT = "replayCount"
DEFAULT_STORAGE = "AzureWebJobsStorage"


@dataclass(frozen=True)
class DeadLetteredEvent:
    """One event of a dead-letter blob."""

    container: str
    blob: str
    index: int
    subscription: str
    event: dict[str, Any] = field(repr=False)
    record: dict[str, Any] = field(repr=False)
    replayed_at: str | None

    @property
    def event_id(self) -> str:
        return str(self.event.get("id"))

    @property
    def event_type(self) -> str | None:
        value = self.event.get("type", self.event.get("eventType"))
        return None if value is None else str(value)

    def summary(self) -> dict[str, Any]:
        return {"container": self.container, "blob": self.blob, "index": self.index,
                "subscription": self.subscription, "eventId": self.event_id,
                "type": self.event_type, "subject": self.event.get("subject"),
                **{name: self.record.get(name) for name in DEAD_LETTER_FIELDS},
                "replayedAt": self.replayed_at}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "event": self.event}


@dataclass(frozen=True)
class BlobReplayResult:
    container: str
    blob: str
    event_ids: tuple[str, ...]
    outcome: str  # replayed | would replay | skipped | failed
    detail: str


def containers(catalogue: Catalogue, container: str | None) -> list[str]:
    if container:
        return [container]
    names = catalogue.dead_letter_containers()
    if not names:
        raise OpsError("no Event Grid subscription in the catalogue has a dead-letter "
                       "container (infra/entities/eventgrid.json)")
    return names


def list_dead_lettered(connections: Connections, catalogue: Catalogue, *,
                       storage: str = DEFAULT_STORAGE, container: str | None = None
                       ) -> list[DeadLetteredEvent]:
    events: list[DeadLetteredEvent] = []
    for name in containers(catalogue, container):
        client = connections.blobs(storage).get_container_client(name)
        if not client.exists():
            continue
        for blob in client.list_blobs(include=["metadata"]):
            events.extend(_read(client, blob.name, blob.metadata or {}))
    return events


def show_dead_lettered(connections: Connections, catalogue: Catalogue, blob: str, *,
                       storage: str = DEFAULT_STORAGE, container: str | None = None
                       ) -> list[DeadLetteredEvent]:
    for name in containers(catalogue, container):
        client = connections.blobs(storage).get_container_client(name)
        if client.exists() and client.get_blob_client(blob).exists():
            properties = client.get_blob_client(blob).get_blob_properties()
            return _read(client, blob, properties.metadata or {})
    raise OpsError(f"no dead-letter blob {blob!r}")


def replay_dead_lettered(connections: Connections, catalogue: Catalogue, *,
                         blobs: Collection[str] | None, storage: str = DEFAULT_STORAGE,
                         container: str | None = None, dry_run: bool = False
                         ) -> list[BlobReplayResult]:
    """Republish the events of the chosen blobs (all when `blobs` is None), then mark each
    blob replayed; blobs already marked are skipped."""
    results: list[BlobReplayResult] = []
    found: set[str] = set()
    for name in containers(catalogue, container):
        client = connections.blobs(storage).get_container_client(name)
        if not client.exists():
            continue
        for item in client.list_blobs(include=["metadata"]):
            if blobs is not None and item.name not in blobs:
                continue
            found.add(item.name)
            if any(r.outcome == "failed" for r in results):
                results.append(BlobReplayResult(name, item.name, (), "failed",
                                                "not tried after an earlier failure"))
                continue
            try:
                results.append(_replay_blob(connections, catalogue, client, item.name,
                                            item.metadata or {}, dry_run=dry_run))
            except AzureError as error:
                results.append(BlobReplayResult(name, item.name, (), "failed",
                                                f"{type(error).__name__}: {error}"))
    for missing in sorted(set(blobs or ()) - found):
        results.append(BlobReplayResult("", missing, (), "skipped", "no such dead-letter blob"))
    return results


def _replay_blob(connections: Connections, catalogue: Catalogue, client: ContainerClient,
                 blob: str, metadata: dict[str, str], *, dry_run: bool) -> BlobReplayResult:
    events = _read(client, blob, metadata)
    ids = tuple(e.event_id for e in events)
    if metadata.get(REPLAYED_AT):
        return BlobReplayResult(client.container_name, blob, ids, "skipped",
                                f"already replayed at {metadata[REPLAYED_AT]}")
    try:
        subscription = catalogue.grid_subscription(blob.split("/", 1)[0])
    except OpsError as error:
        return BlobReplayResult(client.container_name, blob, ids, "skipped", str(error))
    if dry_run:
        return BlobReplayResult(client.container_name, blob, ids, "would replay",
                                f"to topic {subscription.topic}")
    blob_client = client.get_blob_client(blob)
    etag = blob_client.get_blob_properties().etag
    connections.eventgrid(subscription.setting).send(
        [_republishable(subscription, e.event) for e in events])
    count = int(metadata.get(REPLAY_COUNT, "0")) + 1
    blob_client.set_blob_metadata(
        {**metadata, REPLAYED_AT: datetime.now(UTC).isoformat(), REPLAY_COUNT: str(count)},
        etag=etag, match_condition=MatchConditions.IfNotModified)
    return BlobReplayResult(client.container_name, blob, ids, "replayed",
                            f"sent to topic {subscription.topic}, blob marked replayed")


def _republishable(subscription: EventGridSubscription, event: dict[str, Any]
                   ) -> CloudEvent[Any] | EventGridEvent:
    if subscription.input_schema == "EventGridSchema":
        return EventGridEvent.from_dict(
            {k: v for k, v in event.items() if k not in GRID_FILLED_FIELDS})
    return CloudEvent.from_dict(event)


def _read(client: ContainerClient, blob: str, metadata: dict[str, str]
          ) -> list[DeadLetteredEvent]:
    raw = client.download_blob(blob).readall()
    try:
        records = json.loads(raw)
    except ValueError as error:
        raise OpsError(f"{client.container_name}/{blob} is not JSON: {error}") from None
    if isinstance(records, dict):
        records = [records]
    subscription = blob.split("/", 1)[0]
    return [DeadLetteredEvent(client.container_name, blob, index, subscription,
                              {k: v for k, v in record.items() if k not in DEAD_LETTER_FIELDS},
                              record, metadata.get(REPLAYED_AT))
            for index, record in enumerate(records)]
