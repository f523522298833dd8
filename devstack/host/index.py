"""Index a v2 function app the way the Python worker reports it to the Functions host."""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

SCRIPT_FILE = "function_app.py"
# Triggers whose function-level retry policy the v4 host honours (Service Bus, Event Grid and
# HTTP ignore it: they have their own redelivery or none).
RETRY_CAPABLE_TRIGGERS = frozenset({"timerTrigger", "eventHubTrigger", "kafkaTrigger",
                                    "cosmosDBTrigger"})


class IndexingError(RuntimeError):
    """The app cannot be indexed: no FunctionApp, or a function the host would reject."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function as the host sees it: its trigger, its outputs and its settings."""

    name: str
    trigger: Mapping[str, Any]
    outputs: tuple[Mapping[str, Any], ...]
    retry: Mapping[str, Any] | None
    handler: Callable[..., Any]
    parameters: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def context_parameter(self) -> str | None:
        """The parameter that takes `func.Context`, by annotation or by the name `context`."""
        for name, parameter in inspect.signature(self.handler).parameters.items():
            if parameter.annotation is func.Context or name == "context":
                return name
        return None


def _raw_bindings(function: func.Function) -> list[dict[str, Any]]:
    # get_raw_bindings() is the JSON the worker sends the host: enums already as strings.
    return [json.loads(raw) for raw in function.get_raw_bindings()]


def app_import_path(app_dir: Path) -> str | None:
    """Put DIR on sys.path, as the worker does; returns it when it was added (to remove)."""
    root = str(app_dir.resolve())
    if root in sys.path:
        return None
    sys.path.insert(0, root)
    return root


def load_app(app_dir: Path) -> func.FunctionApp:
    """Import DIR/function_app.py (DIR must be on sys.path) and find its one FunctionApp."""
    script = (app_dir / SCRIPT_FILE).resolve()
    if not script.exists():
        raise IndexingError(f"{script} not found")
    root = str(script.parent)
    module_name = f"function_app_{abs(hash(root))}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise IndexingError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionApp)]
    if len(apps) != 1:
        raise IndexingError(f"{script} must define exactly one FunctionApp, found {len(apps)}")
    return apps[0]


def index_functions(app: func.FunctionApp) -> list[FunctionSpec]:
    """Each registered function with its trigger, outputs and retry policy."""
    specs: list[FunctionSpec] = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        name = function.get_function_name()
        if trigger is None or name is None:
            raise IndexingError(f"function {function} has no trigger")
        bindings = _raw_bindings(function)
        trigger_binding = next(b for b in bindings if b["type"] == trigger.get_binding_name())
        outputs = tuple(b for b in bindings if b["direction"] == "OUT")
        handler = function.get_user_function()
        specs.append(FunctionSpec(
            name=name,
            trigger=trigger_binding,
            outputs=outputs,
            retry=function.get_settings_dict("retry_policy"),
            handler=handler,
            parameters=tuple(inspect.signature(handler).parameters),
        ))
    names = [spec.name for spec in specs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise IndexingError(f"duplicate function names: {sorted(duplicates)}")
    return specs
