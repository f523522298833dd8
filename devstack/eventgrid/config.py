"""Event Grid topics and subscriptions from a config file (see docs/devstack-host.md).

The shape follows Microsoft's emulator Config.json files (`UserConfig`, PascalCase) and
the ARM names of an event subscription's properties, so Bicep can be generated from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.config import unknown_fields

CLOUD_EVENTS = "CloudEventSchemaV1_0"
EVENT_GRID = "EventGridSchema"
log = logging.getLogger("devstack.eventgrid")
_FIELDS: dict[str, Any] = {"UserConfig": {"Topics": [{
    "Name": None, "InputSchema": None, "Key": None, "Subscriptions": [{
        "Name": None,
        "Destination": {"EndpointType": None, "FunctionName": None, "EndpointUrl": None},
        "Filter": {"IncludedEventTypes": None, "SubjectBeginsWith": None,
                   "SubjectEndsWith": None, "IsSubjectCaseSensitive": None,
                   "AdvancedFilters": [{"OperatorType": None, "Key": None, "Values": None,
                                        "Value": None}]},
        "RetryPolicy": {"MaxDeliveryAttempts": None, "EventTimeToLiveInMinutes": None},
        "DeadLetterDestination": {"EndpointType": None, "BlobContainerName": None}}]}]}}
# A well-known local key (base64, as Event Grid keys are): the local stack is not secret.
DEV_TOPIC_KEY = "ZGV2c3RhY2stZXZlbnRncmlkLWxvY2FsLWtleQ=="


class EventGridConfigError(ValueError):
    """The config file is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class AdvancedFilter:
    operator: str
    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class EventFilter:
    included_event_types: tuple[str, ...] = ()
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    subject_case_sensitive: bool = False
    advanced: tuple[AdvancedFilter, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    max_delivery_attempts: int = 30
    event_ttl_minutes: int = 1440


@dataclass(frozen=True)
class Subscription:
    name: str
    endpoint_type: str
    function_name: str | None = None
    endpoint_url: str | None = None
    filter: EventFilter = field(default_factory=EventFilter)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    dead_letter_container: str | None = None


@dataclass(frozen=True)
class Topic:
    name: str
    input_schema: str
    key: str
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True)
class EventGridConfig:
    topics: tuple[Topic, ...]
    warnings: tuple[str, ...] = ()
    """Fields ignored (`path: why`), also logged."""

    @classmethod
    def load(cls, path: Path) -> EventGridConfig:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise EventGridConfigError(f"{path}: not JSON: {exc}") from exc
        return cls.parse(document, source=str(path))

    @classmethod
    def parse(cls, document: Mapping[str, Any], source: str = "<config>") -> EventGridConfig:
        topics = document.get("UserConfig", {}).get("Topics")
        if not isinstance(topics, list):
            raise EventGridConfigError("expected UserConfig.Topics to be a list")
        parsed = tuple(_topic(entry) for entry in topics)
        names = [t.name for t in parsed]
        if len(set(names)) != len(names):
            raise EventGridConfigError(f"duplicate topic names in {names}")
        warnings = tuple(f"{source}: {found}" for found in unknown_fields(document, _FIELDS))
        for warning in warnings:
            log.warning("Event Grid config field ignored: %s", warning)
        return cls(parsed, warnings)

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name.lower() == name.lower()), None)


def _required(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise EventGridConfigError(f"{where}: missing {key!r}")
    return entry[key]


def _topic(entry: Mapping[str, Any]) -> Topic:
    name = str(_required(entry, "Name", "topic"))
    schema = entry.get("InputSchema", EVENT_GRID)
    if schema not in (CLOUD_EVENTS, EVENT_GRID):
        raise EventGridConfigError(
            f"topic {name!r}: InputSchema must be {CLOUD_EVENTS!r} or {EVENT_GRID!r}")
    subscriptions = tuple(_subscription(s, f"topic {name!r}")
                          for s in entry.get("Subscriptions", []))
    return Topic(name, schema, str(entry.get("Key") or DEV_TOPIC_KEY), subscriptions)


def _subscription(entry: Mapping[str, Any], where: str) -> Subscription:
    name = str(_required(entry, "Name", where))
    where = f"{where} subscription {name!r}"
    destination = _required(entry, "Destination", where)
    endpoint_type = destination.get("EndpointType")
    if endpoint_type == "AzureFunction":
        function_name = str(_required(destination, "FunctionName", where))
        endpoint_url = None
    elif endpoint_type == "WebHook":
        function_name = None
        endpoint_url = str(_required(destination, "EndpointUrl", where))
    else:
        raise EventGridConfigError(f"{where}: EndpointType must be AzureFunction or WebHook")
    retry_entry = entry.get("RetryPolicy", {})
    retry = RetryPolicy(int(retry_entry.get("MaxDeliveryAttempts", 30)),
                        int(retry_entry.get("EventTimeToLiveInMinutes", 1440)))
    if not 1 <= retry.max_delivery_attempts <= 30:
        raise EventGridConfigError(f"{where}: MaxDeliveryAttempts must be 1..30")
    if not 1 <= retry.event_ttl_minutes <= 1440:
        raise EventGridConfigError(f"{where}: EventTimeToLiveInMinutes must be 1..1440")
    dead_letter = entry.get("DeadLetterDestination")
    container = None
    if dead_letter:
        if dead_letter.get("EndpointType") != "StorageBlob":
            raise EventGridConfigError(f"{where}: dead-letter EndpointType must be StorageBlob")
        container = str(_required(dead_letter, "BlobContainerName", where))
    return Subscription(name, endpoint_type, function_name, endpoint_url,
                        _filter(entry.get("Filter", {})), retry, container)


def _filter(entry: Mapping[str, Any]) -> EventFilter:
    advanced = tuple(
        AdvancedFilter(str(f["OperatorType"]), str(f["Key"]),
                       tuple(f["Values"]) if "Values" in f else (f.get("Value"),))
        for f in entry.get("AdvancedFilters", []))
    return EventFilter(
        included_event_types=tuple(entry.get("IncludedEventTypes") or ()),
        subject_begins_with=str(entry.get("SubjectBeginsWith", "")),
        subject_ends_with=str(entry.get("SubjectEndsWith", "")),
        subject_case_sensitive=bool(entry.get("IsSubjectCaseSensitive", False)),
        advanced=advanced,
    )
