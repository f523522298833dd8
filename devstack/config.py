"""Load entity configs in the shape of Microsoft's emulator `Config.json` files.

A Service Bus config has `UserConfig.Namespaces`; an Event Hubs config has
`UserConfig.NamespaceConfig`; one file may hold both. Files may carry `//` comments
(Microsoft's own sample does),
so they are read as JSON5. Service Bus configs are validated here against the constraints
of Microsoft's schema (hand-checked: its JS-style regexes do not compile in Python), and an
error names the offending field, e.g.
`UserConfig.Namespaces[0].Queues[2].Properties.MaxDeliveryCount: 0 is less than the minimum 1`.
A field that neither schema knows, or that devstack ignores, is a warning naming its path
(`LoadedConfig.warnings`, also logged), never silence.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5

from devstack.eventhubs.entities import ConfigError as EventHubsConfigError
from devstack.eventhubs.entities import hubs_from_config
from devstack.servicebus.entities import (
    EntitySettings,
    NamespaceSpec,
    QueueSpec,
    RuleSpec,
    SubscriptionSpec,
    TopicSpec,
)
from devstack.servicebus.filters import FilterError, parse_sql_action, parse_sql_filter

_NAME = re.compile(r"^[A-Za-z0-9]$|^[A-Za-z0-9][\w\-./]*[A-Za-z0-9]$")
_FORWARD = re.compile(r"^$|^[A-Za-z0-9]$|^[A-Za-z0-9][\w\-./]*[A-Za-z0-9]$")
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$"
)
_CORRELATION_KEYS = {"ContentType", "CorrelationId", "Label", "MessageId", "ReplyTo",
                     "ReplyToSessionId", "SessionId", "To", "Properties"}
_LOGGING_TYPES = {"File", "Console", "File,Console", "Console,File"}

log = logging.getLogger("devstack.config")

# The fields of both emulator schemas, in the shape unknown_fields() reads.
_LOGGING: dict[str, Any] = {"Type": None}
_ENTITY_PROPERTIES = dict.fromkeys(
    ["DeadLetteringOnMessageExpiration", "DefaultMessageTimeToLive", "ForwardTo",
     "ForwardDeadLetteredMessagesTo", "LockDuration", "MaxDeliveryCount", "RequiresSession"])
_RULE: dict[str, Any] = {"Name": None, "Properties": {
    "FilterType": None, "CorrelationFilter": None, "SqlFilter": {"SqlExpression": None},
    "Action": {"SqlExpression": None}}}
_SERVICEBUS_NAMESPACE: dict[str, Any] = {
    "Name": None,
    "Queues": [{"Name": None, "Properties": {
        **_ENTITY_PROPERTIES, "RequiresDuplicateDetection": None,
        "DuplicateDetectionHistoryTimeWindow": None}}],
    "Topics": [{"Name": None,
                "Properties": dict.fromkeys(["DefaultMessageTimeToLive",
                                             "DuplicateDetectionHistoryTimeWindow",
                                             "RequiresDuplicateDetection"]),
                "Subscriptions": [{"Name": None, "Properties": _ENTITY_PROPERTIES,
                                   "Rules": [_RULE]}]}],
}
_EVENTHUBS_NAMESPACE: dict[str, Any] = {
    "Type": None, "Name": None,
    "Entities": [{"Name": None, "PartitionCount": None, "ConsumerGroups": [{"Name": None}]}],
}
_DOCUMENT: dict[str, Any] = {"UserConfig": {
    "Namespaces": [_SERVICEBUS_NAMESPACE], "Logging": _LOGGING,
    "NamespaceConfig": [_EVENTHUBS_NAMESPACE], "LoggingConfig": _LOGGING,
}}


class ConfigError(ValueError):
    """A config file that does not follow the emulator's Config.json schema."""


@dataclass
class LoadedConfig:
    servicebus: list[NamespaceSpec] = field(default_factory=list)
    eventhubs: list[dict[str, Any]] = field(default_factory=list)
    """Event Hubs documents, checked here and built by the Event Hubs package."""
    warnings: list[str] = field(default_factory=list)
    """Fields ignored, each as `file: path: why`."""


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration such as `PT1M` or `P1DT2H` (years 365 d, months 30 d)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration")
    years, months, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(
        ((years * 365 + months * 30 + days) * 24 + hours) * 3600 + minutes * 60 + seconds
    )


def read_document(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A config document from a path (JSON with comments) or an already-parsed mapping."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        document = json5.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    return document


def load_configs(sources: Sequence[str | Path | Mapping[str, Any]]) -> LoadedConfig:
    """Read every config; Service Bus namespaces are validated and merged into one, and a
    file with both shapes contributes both."""
    loaded = LoadedConfig()
    for source in sources:
        label = str(source) if not isinstance(source, Mapping) else "<config>"
        document = read_document(source)
        user = document.get("UserConfig")
        if not isinstance(user, dict):
            raise ConfigError(f"{label}: UserConfig: a required object is missing")
        if "NamespaceConfig" not in user and "Namespaces" not in user:
            raise ConfigError(
                f"{label}: UserConfig: neither `Namespaces` (Service Bus) nor "
                "`NamespaceConfig` (Event Hubs) is present"
            )
        try:
            if "Namespaces" in user:
                loaded.servicebus.append(servicebus_namespace(document))
            if "NamespaceConfig" in user:
                hubs_from_config(document)
                loaded.eventhubs.append(document)
        except (ConfigError, EventHubsConfigError) as exc:
            raise ConfigError(f"{label}: {exc}") from None
        found = [f"{label}: {warning}" for warning in ignored_fields(document)]
        for warning in found:
            log.warning("config field ignored: %s", warning)
        loaded.warnings.extend(found)
    return loaded


def ignored_fields(document: Mapping[str, Any]) -> list[str]:
    """Every field of `document` that devstack does not act on, with its path and why."""
    found = unknown_fields(document, _DOCUMENT)
    user = document.get("UserConfig") or {}
    for key in ("Logging", "LoggingConfig"):
        section = user.get(key)
        logging_type = section.get("Type") if isinstance(section, dict) else None
        if isinstance(logging_type, str) and "File" in logging_type:
            found.append(f"UserConfig.{key}.Type: {logging_type!r}: devstack logs to the "
                         "console only, File is ignored")
    for index, namespace in enumerate(user.get("NamespaceConfig") or []):
        kind = namespace.get("Type", "EventHub") if isinstance(namespace, dict) else None
        if kind != "EventHub":
            found.append(f"UserConfig.NamespaceConfig[{index}].Type: {kind!r}: only EventHub "
                         "namespaces are served; its entities are not created")
    for n, namespace in enumerate(user.get("Namespaces") or []):
        for t, topic in enumerate((namespace or {}).get("Topics") or []):
            for s, subscription in enumerate((topic or {}).get("Subscriptions") or []):
                for r, rule in enumerate((subscription or {}).get("Rules") or []):
                    props = (rule or {}).get("Properties") or {}
                    other = {"Correlation": "SqlFilter", "Sql": "CorrelationFilter"}.get(
                        str(props.get("FilterType")))
                    if other is not None and props.get(other) is not None:
                        found.append(
                            f"UserConfig.Namespaces[{n}].Topics[{t}].Subscriptions[{s}]"
                            f".Rules[{r}].Properties.{other}: ignored, FilterType is "
                            f"{props['FilterType']!r}")
    return found


def unknown_fields(value: Any, spec: Any, where: str = "") -> list[str]:
    """`path: unknown field, ignored` for every field of `value` that `spec` lacks; a spec
    is a dict of an object's fields, a one-item list for an array of such objects, or None
    for a value not looked into."""
    found: list[str] = []
    if isinstance(spec, list) and isinstance(value, list):
        for index, item in enumerate(value):
            found += unknown_fields(item, spec[0], f"{where}[{index}]")
    elif isinstance(spec, dict) and isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if key not in spec:
                found.append(f"{path}: unknown field, ignored")
            else:
                found += unknown_fields(item, spec[key], path)
    return found


def merge_namespaces(namespaces: Sequence[NamespaceSpec]) -> NamespaceSpec:
    """All Service Bus entities in one namespace (the connection string names one host)."""
    queues: list[QueueSpec] = []
    topics: list[TopicSpec] = []
    names: set[str] = set()
    for namespace in namespaces:
        for entity_name in [q.name for q in namespace.queues] + [t.name for t in namespace.topics]:
            key = entity_name.lower()
            if key in names:
                raise ConfigError(f"entity {entity_name!r} is declared more than once")
            names.add(key)
        queues.extend(namespace.queues)
        topics.extend(namespace.topics)
    name = namespaces[0].name if namespaces else "sbemulatorns"
    return NamespaceSpec(name=name, queues=tuple(queues), topics=tuple(topics))


# ---------------------------------------------------------------- Service Bus validation


class _Checker:
    def __init__(self, where: str, value: Any) -> None:
        self.where = where
        self.value = value

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}")

    def at(self, key: str | int) -> _Checker:
        if isinstance(key, int):
            return _Checker(f"{self.where}[{key}]", self.value[key])
        return _Checker(f"{self.where}.{key}", self.value.get(key))

    def obj(self, *, required: bool = True) -> dict[str, Any]:
        if self.value is None and not required:
            return {}
        if not isinstance(self.value, dict):
            raise self.fail("a required object is missing" if self.value is None
                            else f"{self.value!r} is not of type 'object'")
        return self.value

    def array(self, *, min_items: int = 0, max_items: int | None = None,
              required: bool = True) -> list[Any]:
        if self.value is None and not required:
            return []
        if not isinstance(self.value, list):
            raise self.fail("a required array is missing" if self.value is None
                            else f"{self.value!r} is not of type 'array'")
        if len(self.value) < min_items:
            raise self.fail(f"should have at least {min_items} item(s)")
        if max_items is not None and len(self.value) > max_items:
            raise self.fail(f"should have at most {max_items} item(s)")
        return self.value

    def string(self, *, pattern: re.Pattern[str] | None = None, required: bool = True,
               default: str = "") -> str:
        if self.value is None:
            if required:
                raise self.fail("a required string is missing")
            return default
        if not isinstance(self.value, str):
            raise self.fail(f"{self.value!r} is not of type 'string'")
        if pattern is not None and not pattern.match(self.value):
            raise self.fail(f"{self.value!r} does not match the allowed name pattern")
        return self.value

    def boolean(self, default: bool) -> bool:
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            raise self.fail(f"{self.value!r} is not of type 'boolean'")
        return self.value

    def integer(self, default: int, minimum: int, maximum: int) -> int:
        if self.value is None:
            return default
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise self.fail(f"{self.value!r} is not of type 'integer'")
        if self.value < minimum:
            raise self.fail(f"{self.value} is less than the minimum {minimum}")
        if self.value > maximum:
            raise self.fail(f"{self.value} is greater than the maximum {maximum}")
        return self.value

    def duration(self, default: str) -> float:
        text = self.string(required=False, default=default)
        try:
            return parse_duration(text)
        except ValueError:
            raise self.fail(f"{text!r} is not an ISO 8601 duration (e.g. PT1M)") from None


def servicebus_namespace(document: Mapping[str, Any]) -> NamespaceSpec:
    root = _Checker("UserConfig", document.get("UserConfig"))
    user = root.obj()
    namespaces = root.at("Namespaces").array(min_items=1, max_items=1)
    logging = root.at("Logging")
    if user.get("Logging") is not None:
        logging.obj()
        logging.at("Type").string()
        if logging.value["Type"] not in _LOGGING_TYPES:
            raise logging.at("Type").fail(
                f"{logging.value['Type']!r} is not one of {sorted(_LOGGING_TYPES)}"
            )
    spec = root.at("Namespaces").at(0)
    spec.obj()
    name = spec.at("Name").string(pattern=_NAME)
    queues_at = spec.at("Queues")
    topics_at = spec.at("Topics")
    queues = queues_at.array(max_items=50, required=False)
    topics = topics_at.array(max_items=50, required=False)
    if len(queues) + len(topics) > 50:
        raise spec.fail("at most 50 queues and topics per namespace")
    del namespaces
    return NamespaceSpec(
        name=name,
        queues=tuple(_queue(queues_at.at(i)) for i in range(len(queues))),
        topics=tuple(_topic(topics_at.at(i)) for i in range(len(topics))),
    )


def _settings(props: _Checker, *, queue: bool) -> EntitySettings:
    props.obj(required=False)
    if props.value is None:
        props = _Checker(props.where, {})
    return EntitySettings(
        lock_duration=props.at("LockDuration").duration("PT1M"),
        max_delivery_count=props.at("MaxDeliveryCount").integer(3, 1, 10),
        default_ttl=props.at("DefaultMessageTimeToLive").duration("PT1H"),
        dead_lettering_on_expiration=props.at("DeadLetteringOnMessageExpiration").boolean(False),
        requires_session=props.at("RequiresSession").boolean(False),
        forward_to=props.at("ForwardTo").string(pattern=_FORWARD, required=False),
        forward_dead_lettered_to=props.at("ForwardDeadLetteredMessagesTo").string(
            pattern=_FORWARD, required=False
        ),
        requires_duplicate_detection=(
            props.at("RequiresDuplicateDetection").boolean(False) if queue else False
        ),
        duplicate_window=(
            props.at("DuplicateDetectionHistoryTimeWindow").duration("PT20S") if queue else 20.0
        ),
    )


def _queue(at: _Checker) -> QueueSpec:
    at.obj()
    return QueueSpec(
        name=at.at("Name").string(pattern=_NAME),
        settings=_settings(at.at("Properties"), queue=True),
    )


def _topic(at: _Checker) -> TopicSpec:
    at.obj()
    name = at.at("Name").string(pattern=_NAME)
    props = at.at("Properties")
    props.obj(required=False)
    if props.value is None:
        props = _Checker(props.where, {})
    subscriptions_at = at.at("Subscriptions")
    subscriptions = subscriptions_at.array(min_items=1, max_items=50)
    return TopicSpec(
        name=name,
        default_ttl=props.at("DefaultMessageTimeToLive").duration("PT1H"),
        requires_duplicate_detection=props.at("RequiresDuplicateDetection").boolean(False),
        duplicate_window=props.at("DuplicateDetectionHistoryTimeWindow").duration("PT20S"),
        subscriptions=tuple(
            _subscription(subscriptions_at.at(i)) for i in range(len(subscriptions))
        ),
    )


def _subscription(at: _Checker) -> SubscriptionSpec:
    at.obj()
    rules_at = at.at("Rules")
    rules = rules_at.array(max_items=1000, required=False)
    return SubscriptionSpec(
        name=at.at("Name").string(pattern=_NAME),
        settings=_settings(at.at("Properties"), queue=False),
        rules=tuple(_rule(rules_at.at(i)) for i in range(len(rules))),
    )


def _rule(at: _Checker) -> RuleSpec:
    at.obj()
    name = at.at("Name").string(pattern=_NAME)
    props = at.at("Properties")
    props.obj()
    filter_type = props.at("FilterType").string()
    if filter_type not in ("Correlation", "Sql"):
        raise props.at("FilterType").fail(f"{filter_type!r} is not one of ['Correlation', 'Sql']")
    correlation: dict[str, Any] = {}
    sql = ""
    if filter_type == "Correlation":
        corr_at = props.at("CorrelationFilter")
        correlation = corr_at.obj()
        if not correlation:
            raise corr_at.fail("should have at least 1 property")
        for key in correlation:
            if key not in _CORRELATION_KEYS:
                raise corr_at.fail(f"unknown property {key!r}")
            if key == "Properties":
                if not corr_at.at(key).obj():
                    raise corr_at.at(key).fail("should have at least 1 property")
            else:
                corr_at.at(key).string()
    else:
        sql = _sql_expression(props.at("SqlFilter"), parse_sql_filter)
    action = ""
    if props.value.get("Action") is not None:
        action = _sql_expression(props.at("Action"), parse_sql_action)
    return RuleSpec(name=name, filter_type=filter_type, correlation=correlation, sql=sql,
                    action=action)


def _sql_expression(at: _Checker, parse: Callable[[str], object]) -> str:
    """The object's SqlExpression, checked with `parse` from the SQL filter language."""
    at.obj()
    expression_at = at.at("SqlExpression")
    expression = expression_at.string()
    try:
        parse(expression)
    except FilterError as exc:
        raise expression_at.fail(str(exc)) from None
    return expression
