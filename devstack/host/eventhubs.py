"""Event Hubs triggers through the official SDK, with the Blob checkpoint store on storage.

As on Azure: partitions are balanced through ownership blobs in `azure-webjobs-eventhub`,
a batch (up to maxEventBatchSize) goes to the function (per event for cardinality one),
the function-level retry policy applies, and the checkpoint advances after the batch
WHETHER OR NOT the function threw: Event Hubs has no redelivery.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, PartitionContext
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.functions import meta
from azure.storage.blob.aio import ContainerClient

from devstack.host.index import FunctionSpec
from devstack.host.invocation import Invoker
from devstack.host.settings import AppSettings, HostConfig, option, parse_timespan

log = logging.getLogger("devstack.host")
CHECKPOINT_CONTAINER = "azure-webjobs-eventhub"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _partition_context(context: PartitionContext) -> dict[str, str]:
    return {"ConsumerGroup": context.consumer_group, "EventHubName": context.eventhub_name,
            "FullyQualifiedNamespace": context.fully_qualified_namespace,
            "PartitionId": context.partition_id}


def _system_properties(event: EventData) -> dict[str, Any]:
    return {"SequenceNumber": event.sequence_number, "Offset": str(event.offset),
            "EnqueuedTimeUtc": event.enqueued_time.isoformat() if event.enqueued_time else None,
            "PartitionKey": _text(event.partition_key)}


def _body(event: EventData) -> bytes:
    body = event.body
    if event.body_type == AmqpMessageBodyType.DATA:
        return body if isinstance(body, bytes) else b"".join(cast(Iterable[bytes], body))
    return json.dumps(body, default=str).encode()


def to_function_events(events: Sequence[EventData],
                       context: PartitionContext) -> list[func.EventHubEvent]:
    """`func.EventHubEvent`s with the trigger metadata the host fills for a batch."""
    partition = _partition_context(context)
    system = [_system_properties(e) for e in events]
    shared = {
        "PartitionContext": meta.Datum(json.dumps(partition), "json"),
        "SystemPropertiesArray": meta.Datum(json.dumps(system), "json"),
        "PropertiesArray": meta.Datum(json.dumps(
            [{str(_text(k)): _text(v) for k, v in (e.properties or {}).items()}
             for e in events], default=str), "json"),
    }
    return [func.EventHubEvent(
        body=_body(event),
        trigger_metadata=shared,
        enqueued_time=event.enqueued_time,
        partition_key=_text(event.partition_key),
        sequence_number=event.sequence_number,
        offset=str(event.offset),
    ) for event in events]


class EventHubListener:
    """Receives for one Event Hubs triggered function until cancelled."""

    def __init__(self, spec: FunctionSpec, settings: AppSettings, config: HostConfig,
                 invoker: Invoker) -> None:
        self.spec = spec
        trigger = spec.trigger
        self._connection = settings.connection(str(trigger["connection"]))
        self._storage = settings.connection("AzureWebJobsStorage")
        self._hub = settings.resolve(str(trigger["eventHubName"]))
        self._consumer_group = settings.resolve(str(trigger.get("consumerGroup") or "$Default"))
        self._many = str(trigger.get("cardinality", "MANY")).upper() == "MANY"
        options = config.extension("eventHubs")
        self._batch_size = int(option(options, "maxEventBatchSize", 100))
        self._max_wait = parse_timespan(str(option(options, "maxWaitTime", "00:01:00"))
                                        ).total_seconds()
        self._prefetch = int(option(options, "prefetchCount", 300))
        self._checkpoint_every = int(option(options, "batchCheckpointFrequency", 1))
        initial = option(options, "initialOffsetOptions", {}) or {}
        self._from_end = str(option(initial, "type", "fromStart")).lower() == "fromend"
        self._batches: dict[str, int] = {}
        self._invoker = invoker

    async def run(self) -> None:
        async with ContainerClient.from_connection_string(self._storage,
                                                          CHECKPOINT_CONTAINER) as container:
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
        store = BlobCheckpointStore.from_connection_string(self._storage, CHECKPOINT_CONTAINER)
        client = EventHubConsumerClient.from_connection_string(
            self._connection, consumer_group=self._consumer_group, eventhub_name=self._hub,
            checkpoint_store=store)
        log.info("Function 'Functions.%s' listening on Event Hub %s/%s (batch up to %d)",
                 self.spec.name, self._hub, self._consumer_group, self._batch_size)
        async with client, store:
            await client.receive_batch(
                on_event_batch=self._on_batch, max_batch_size=self._batch_size,
                max_wait_time=self._max_wait, prefetch=self._prefetch,
                starting_position="@latest" if self._from_end else "-1")

    async def _on_batch(self, context: PartitionContext, batch: list[EventData]) -> None:
        if not batch:
            return
        events = to_function_events(batch, context)
        reason = (f"(null)EventHubs trigger fired at partition {context.partition_id} "
                  f"({len(batch)} events)")
        if self._many:
            await self._invoke(events, reason)
        else:
            for event in events:
                await self._invoke(event, reason)
        # Checkpoint whether or not the function succeeded: no event is seen twice.
        count = self._batches.get(context.partition_id, 0) + 1
        self._batches[context.partition_id] = count
        if count % self._checkpoint_every == 0:
            await context.update_checkpoint(batch[-1])

    async def _invoke(self, value: Any, reason: str) -> None:
        try:
            await self._invoker.invoke(self.spec, value, reason=reason)
        except Exception:
            return  # logged by the invoker; the batch is still checkpointed
