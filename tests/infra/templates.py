"""The Bicep templates and entity files under infra/, parsed for tests (pycep-parser)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = INFRA / "main.bicep"
MODULES = INFRA / "modules"
ENTITIES = INFRA / "entities"

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
def template(path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = dict(BicepParser().parse(file_path=path))
    return parsed


def module(name: str) -> dict[str, Any]:
    return template(MODULES / f"{name}.bicep")


def body(config: dict[str, Any]) -> dict[str, Any]:
    """A resource or module body without its loop or deployment-condition wrappers."""
    while set(config) <= {"loop_type", "condition", "config"} and "config" in config:
        config = config["config"]
    return config


def resources(resource_type: str) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """Every declared (not `existing`) resource of a type, in every template."""
    for path in bicep_files():
        for name, resource in (template(path).get("resources") or {}).items():
            if resource["type"] == resource_type and not resource["existing"]:
                yield path, name, body(resource["config"])


def variable(path: Path, name: str) -> Any:
    return template(path)["variables"][name]["value"]


def parameter_default(path: Path, name: str) -> Any:
    return template(path)["parameters"][name]["default"]


def function_calls(node: Any, function_type: str) -> Iterator[dict[str, Any]]:
    """Every call of a Bicep function (pycep's snake_case type, e.g. 'load_json_content')."""
    if isinstance(node, dict):
        function = node.get("function")
        if isinstance(function, dict) and function.get("type") == function_type:
            yield function
        for value in node.values():
            yield from function_calls(value, function_type)
    elif isinstance(node, list):
        for item in node:
            yield from function_calls(item, function_type)


def entity_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ENTITIES / name).read_text())
    return loaded


def service_bus_namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = entity_file("servicebus.json")["UserConfig"]["Namespaces"][0]
    return namespace


def event_hubs() -> list[dict[str, Any]]:
    hubs: list[dict[str, Any]] = entity_file("eventhubs.json")["UserConfig"]["NamespaceConfig"][0][
        "Entities"
    ]
    return hubs


def event_grid_topics() -> list[dict[str, Any]]:
    topics: list[dict[str, Any]] = entity_file("eventgrid.json")["UserConfig"]["Topics"]
    return topics


def app_settings() -> dict[str, Any]:
    """Every app setting main.bicep composes, by name (values as pycep expressions)."""
    settings: dict[str, Any] = {}
    for name in (
        "connectionSettings", "telemetrySettings", "llmCallSettings", "agentSettings"
    ):
        settings.update(variable(MAIN, name))
    for conditional in ("reasonerSettings", "webhookSettings"):
        operands = variable(MAIN, conditional)["operator"]["operands"]
        settings.update(operands["true_value"])
        settings.update(operands["false_value"])
    settings.update(variable(MODULES / "function-app-premium.bicep", "premiumSettings"))
    return settings
