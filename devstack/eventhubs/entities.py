"""Event hubs as declared in the Event Hubs emulator's `Config.json` shape."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONSUMER_GROUP = "$default"
MAX_PARTITIONS = 32
# The emulator schema's name pattern (its JS class [\w-\.\/] written for Python's re).
_NAME = re.compile(r"^[A-Za-z0-9]$|^[A-Za-z0-9][\w.\-/]*[A-Za-z0-9]$")


class ConfigError(ValueError):
    """The Event Hubs configuration is not in the emulator's Config.json shape."""


@dataclass(frozen=True)
class EventHubSpec:
    """One event hub: its name, partition count and consumer groups."""

    name: str
    partition_count: int
    consumer_groups: tuple[str, ...] = (DEFAULT_CONSUMER_GROUP,)

    @property
    def partition_ids(self) -> list[str]:
        return [str(index) for index in range(self.partition_count)]


def _entity(raw: Any, where: str) -> EventHubSpec:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("Name"), str) or not raw["Name"]:
        raise ConfigError(f"{where}: an entity needs a non-empty string Name")
    name = raw["Name"]
    if not _NAME.match(name):
        raise ConfigError(f"{where}: invalid event hub name {name!r}")
    count = raw.get("PartitionCount")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PARTITIONS:
        raise ConfigError(
            f"{where} ({name}): PartitionCount must be an integer 1..{MAX_PARTITIONS}, "
            f"got {count!r}"
        )
    groups = [DEFAULT_CONSUMER_GROUP]  # the service always has $default
    for group in raw.get("ConsumerGroups") or []:
        group_name = group.get("Name") if isinstance(group, Mapping) else None
        if not isinstance(group_name, str) or not (
            group_name == DEFAULT_CONSUMER_GROUP or _NAME.match(group_name)
        ):
            raise ConfigError(f"{where} ({name}): invalid consumer group name {group_name!r}")
        if group_name not in groups:
            groups.append(group_name)
    return EventHubSpec(name, count, tuple(groups))


def hubs_from_config(config: Mapping[str, Any]) -> list[EventHubSpec]:
    """The event hubs of every `EventHub` namespace in an emulator Config.json document."""
    user_config = config.get("UserConfig")
    if not isinstance(user_config, Mapping):
        raise ConfigError("missing UserConfig object")
    namespaces = user_config.get("NamespaceConfig")
    if not isinstance(namespaces, list):
        raise ConfigError("UserConfig.NamespaceConfig must be a list")
    hubs: list[EventHubSpec] = []
    for ns_index, namespace in enumerate(namespaces):
        if not isinstance(namespace, Mapping) or namespace.get("Type", "EventHub") != "EventHub":
            continue
        for index, raw in enumerate(namespace.get("Entities") or []):
            hub = _entity(raw, f"NamespaceConfig[{ns_index}].Entities[{index}]")
            if any(existing.name == hub.name for existing in hubs):
                raise ConfigError(f"event hub {hub.name!r} is declared twice")
            hubs.append(hub)
    return hubs


def load_hubs(path: Path) -> list[EventHubSpec]:
    """The event hubs declared in an emulator Config.json file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: the document must be a JSON object")
    return hubs_from_config(document)
