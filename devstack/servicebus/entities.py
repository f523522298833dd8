"""Service Bus entities as declared in the emulator's Config.json (already validated)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EntitySettings:
    """What a queue or a subscription does with its messages. Durations are seconds."""

    lock_duration: float = 60.0
    max_delivery_count: int = 3
    default_ttl: float = 3600.0
    dead_lettering_on_expiration: bool = False
    requires_session: bool = False
    forward_to: str = ""
    forward_dead_lettered_to: str = ""
    requires_duplicate_detection: bool = False
    duplicate_window: float = 20.0


@dataclass(frozen=True)
class RuleSpec:
    name: str
    filter_type: str
    """"Correlation", "Sql", or "True" (matches everything, as the $Default rule)."""
    correlation: dict[str, object] = field(default_factory=dict)
    sql: str = ""
    action: str = ""


@dataclass(frozen=True)
class SubscriptionSpec:
    name: str
    settings: EntitySettings
    rules: tuple[RuleSpec, ...] = ()


@dataclass(frozen=True)
class QueueSpec:
    name: str
    settings: EntitySettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    default_ttl: float = 3600.0
    requires_duplicate_detection: bool = False
    duplicate_window: float = 20.0
    subscriptions: tuple[SubscriptionSpec, ...] = ()


@dataclass(frozen=True)
class NamespaceSpec:
    name: str
    queues: tuple[QueueSpec, ...] = ()
    topics: tuple[TopicSpec, ...] = ()
