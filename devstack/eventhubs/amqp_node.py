"""Event Hubs over AMQP 1.0: the node that serves an `EventHubsNamespace` to the SDKs.

Addresses (after `amqps://host/`): producers attach to `<hub>` or `<hub>/Partitions/<id>`,
consumers to `<hub>/ConsumerGroups/<group>/Partitions/<id>`, and hub and partition
properties are READ from `$management`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from devstack.amqp.codec import Described, Timestamp
from devstack.amqp.connection import IncomingDelivery, Link
from devstack.amqp.frames import ACCEPTED_STATE, AmqpError
from devstack.amqp.message import BATCH_FORMAT
from devstack.amqp.node import (
    LinkHandler,
    ManagementNode,
    ManagementRequest,
    ManagementResponse,
    Node,
    management_error,
)
from devstack.eventhubs.amqp_message import (
    InvalidMessage,
    batch_messages,
    partition_key_of,
    runtime_metric_section,
    with_delivery_annotations,
)
from devstack.eventhubs.namespace import (
    NOT_FOUND,
    EventHubsError,
    EventHubsNamespace,
    PartitionReader,
)
from devstack.eventhubs.partition_log import PartitionLog
from devstack.eventhubs.positions import (
    FROM_START,
    SELECTOR_FILTER,
    InvalidSelector,
    StartPosition,
)

MANAGEMENT_ADDRESS = "$management"
OWNER_LEVEL_PROPERTY = "com.microsoft:epoch"
RUNTIME_METRIC_CAPABILITY = "com.microsoft:enable-receiver-runtime-metric"
EVENTHUB_TYPE = "com.microsoft:eventhub"
PARTITION_TYPE = "com.microsoft:partition"


class SendFaults(Protocol):
    """Faults armed by tests (devstack.faults.Faults): consulted before every send."""

    def before_send(self, path: str) -> None:
        """Raise AmqpError to refuse the send (e.g. server-busy)."""


def _text(value: Any) -> str | None:
    """A property the SDKs send as string, symbol or (azure-eventhub's READ) binary."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return None if value is None else str(value)


def _amqp_error(error: EventHubsError) -> AmqpError:
    return AmqpError(error.condition, error.description)


class _Publisher(LinkHandler):
    """A producer link: every transfer (one event or a batch) is appended to one partition."""

    def __init__(
        self,
        namespace: EventHubsNamespace,
        hub: str,
        partition_id: str | None,
        faults: SendFaults | None,
    ) -> None:
        self._namespace = namespace
        self._hub = hub
        self._partition_id = partition_id
        self._faults = faults

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        if self._faults is not None:
            self._faults.before_send(self._hub.lower())
        payload = delivery.payload
        try:
            messages = (
                batch_messages(payload) if delivery.message_format == BATCH_FORMAT else [payload]
            )
            partition_key = partition_key_of(payload)
            self._namespace.publish(self._hub, self._partition_id, messages, partition_key)
        except InvalidMessage as error:
            raise AmqpError("amqp:decode-error", f"malformed event: {error}") from error
        except EventHubsError as error:
            raise _amqp_error(error) from error
        return ACCEPTED_STATE


class _PartitionReceiver(LinkHandler):
    """A consumer link: sends the partition's events from its start position, as credit
    allows, pushed on flow and on every append (no task per link or per event)."""

    def __init__(
        self,
        namespace: EventHubsNamespace,
        partition: PartitionLog,
        next_index: int,
        runtime_metric: bool,
    ) -> None:
        self._namespace = namespace
        self._partition = partition
        self._next_index = next_index
        self._runtime_metric = runtime_metric
        self._link: Link | None = None
        self.reader: PartitionReader | None = None

    def on_attached(self, link: Link) -> None:
        self._link = link
        self._partition.listeners.add(self._deliver)
        self._deliver()

    def on_flow(self, link: Link) -> None:
        self._deliver()

    def _deliver(self) -> None:
        link = self._link
        if link is None or link.detached or link.credit <= 0:
            return
        events = self._partition.read(self._next_index, link.credit)
        if events and self._runtime_metric:
            last = self._partition.properties()
            section = runtime_metric_section(
                last.last_enqueued_sequence_number,
                last.last_enqueued_offset,
                last.last_enqueued_time_ms,
                int(time.time() * 1000),
            )
            events = [with_delivery_annotations(event, section) for event in events]
        for event in events:
            link.send(event, settled=True)
        self._next_index += len(events)

    def stolen(self, reason: str) -> None:
        self._partition.listeners.discard(self._deliver)
        self.reader = None
        if self._link is not None:
            self._link.detach(AmqpError("amqp:link:stolen", reason))

    def on_detached(self, link: Link) -> None:
        self._partition.listeners.discard(self._deliver)
        if self.reader is not None:
            self._namespace.close_reader(self.reader)
            self.reader = None


def _start_position(link: Link) -> StartPosition:
    for key, value in link.source_filters.items():
        if _text(key) == SELECTOR_FILTER or (
            isinstance(value, Described) and _text(value.descriptor) == SELECTOR_FILTER
        ):
            selector = value.value if isinstance(value, Described) else value
            try:
                return StartPosition.from_selector(_text(selector) or "")
            except InvalidSelector as error:
                raise AmqpError("amqp:invalid-field", str(error)) from error
    return FROM_START


class EventHubsNode(Node):
    """Claims the addresses of the namespace's hubs and `$management`."""

    def __init__(self, namespace: EventHubsNamespace, faults: SendFaults | None = None) -> None:
        self.namespace = namespace
        self._faults = faults
        self._management = ManagementNode(
            lambda address: address == MANAGEMENT_ADDRESS, self._read_properties
        )

    def open_link(self, link: Link) -> LinkHandler | None:
        if link.address == MANAGEMENT_ADDRESS:
            return self._management.open_link(link)
        parts = link.address.split("/")
        if parts[0].lower() not in self.namespace.hubs:
            return None
        try:
            if link.is_sender:
                return self._open_receiver(link, parts)
            if len(parts) == 1:
                return _Publisher(self.namespace, parts[0], None, self._faults)
            if len(parts) == 3 and parts[1].lower() == "partitions":
                self.namespace.hub(parts[0]).partition(parts[2])
                return _Publisher(self.namespace, parts[0], parts[2], self._faults)
        except EventHubsError as error:
            raise _amqp_error(error) from error
        raise AmqpError(NOT_FOUND, f"no Event Hubs entity at address {link.address!r}")

    def close(self) -> None:
        """Close the partition journals (DevStack calls this on stop)."""
        self.namespace.close()

    def _open_receiver(self, link: Link, parts: list[str]) -> LinkHandler:
        if (
            len(parts) != 5
            or parts[1].lower() != "consumergroups"
            or parts[3].lower() != "partitions"
        ):
            raise AmqpError(
                NOT_FOUND,
                f"receive from <hub>/ConsumerGroups/<group>/Partitions/<id>, not {link.address!r}",
            )
        hub, group, partition_id = parts[0], parts[2], parts[4]
        partition = self.namespace.hub(hub).partition(partition_id)
        position = _start_position(link)
        owner_level = link.properties.get(OWNER_LEVEL_PROPERTY)
        runtime_metric = any(
            _text(capability) == RUNTIME_METRIC_CAPABILITY
            for capability in link.desired_capabilities
        )
        receiver = _PartitionReceiver(
            self.namespace, partition, partition.start_index(position), runtime_metric
        )
        receiver.reader = self.namespace.open_reader(
            hub,
            group,
            partition_id,
            None if owner_level is None else int(owner_level),
            receiver.stolen,
        )
        return receiver

    def _read_properties(self, request: ManagementRequest) -> ManagementResponse:
        props = request.application_properties
        operation, kind = _text(props.get("operation")), _text(props.get("type"))
        name = _text(props.get("name")) or ""
        if operation != "READ" or kind not in (EVENTHUB_TYPE, PARTITION_TYPE):
            return management_error(
                400, "amqp:not-implemented", f"unsupported operation {operation} on {kind}"
            )
        try:
            if kind == EVENTHUB_TYPE:
                hub = self.namespace.eventhub_properties(name)
                return ManagementResponse(
                    body={
                        "name": hub.name,
                        "type": EVENTHUB_TYPE,
                        "created_at": Timestamp(hub.created_at_ms),
                        "partition_count": len(hub.partition_ids),
                        "partition_ids": hub.partition_ids,
                    }
                )
            part = self.namespace.partition_properties(name, _text(props.get("partition")) or "")
        except EventHubsError as error:
            return management_error(404, error.condition, error.description)
        return ManagementResponse(
            body={
                "name": part.hub,
                "type": PARTITION_TYPE,
                "partition": part.partition_id,
                "begin_sequence_number": part.beginning_sequence_number,
                "last_enqueued_sequence_number": part.last_enqueued_sequence_number,
                "last_enqueued_offset": part.last_enqueued_offset,
                "last_enqueued_time_utc": Timestamp(part.last_enqueued_time_ms),
                "is_partition_empty": part.is_empty,
            }
        )
