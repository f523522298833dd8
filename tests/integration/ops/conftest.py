"""The ops CLI against a real devstack (Service Bus + Event Hubs) and Azurite.

Each test gets its own devstack (it starts in about 0.1 s), so a test sees only its own
dead letters. The entity files are the app's `infra/entities/` with one change: duplicate
detection windows of 4 s instead of 5 min. Replay keeps the MessageId, so a replay must wait
out the window of the original send; 4 s keeps that wait short, yet longer than one CLI run
(which the crash test needs), while every name, rule and count stays the app's own (the
session fixture `devstack` has the 5-minute window).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient
from typer.testing import CliRunner, Result

from agents.ops.cli import app
from devstack.azurite import Azurite
from devstack.server import DevStack

ENTITIES = Path(__file__).resolve().parents[3] / "infra" / "entities"


@pytest.fixture(scope="session")
def entities_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("entities")
    servicebus = json.loads((ENTITIES / "servicebus.json").read_text())
    for namespace in servicebus["UserConfig"]["Namespaces"]:
        for entity in namespace.get("Queues", []) + namespace.get("Topics", []):
            if "DuplicateDetectionHistoryTimeWindow" in entity["Properties"]:
                entity["Properties"]["DuplicateDetectionHistoryTimeWindow"] = "PT4S"
    (folder / "servicebus.json").write_text(json.dumps(servicebus))
    for name in ("eventhubs.json", "eventgrid.json"):
        (folder / name).write_text((ENTITIES / name).read_text())
    return folder


@pytest.fixture
def stack(entities_dir: Path) -> Iterator[DevStack]:
    configs = [entities_dir / "servicebus.json", entities_dir / "eventhubs.json"]
    with DevStack(configs, port=0) as server:
        yield server


@pytest.fixture
def values(stack: DevStack, azurite: Azurite) -> dict[str, str]:
    """The app settings as local.settings.json would hold them for this stack."""
    bus = stack.connection_string
    return {"ORDERS_SERVICEBUS": bus, "FRAUD_SERVICEBUS": bus, "TRIAGE_SERVICEBUS": bus,
            "FRAUD_EVENTHUBS": bus, "STATE_STORAGE": azurite.connection_string,
            "AzureWebJobsStorage": azurite.connection_string}


@pytest.fixture
def ops(tmp_path: Path, values: dict[str, str], entities_dir: Path
        ) -> Callable[..., Result]:
    """Run `python -m agents.ops ARGS` in-process with a local.settings.json for the stack."""
    settings = tmp_path / "local.settings.json"

    def run(*args: str, extra: dict[str, str] | None = None) -> Result:
        settings.write_text(json.dumps({"IsEncrypted": False,
                                        "Values": {**values, **(extra or {})}}))
        return CliRunner().invoke(app, ["--settings", str(settings), "--entities",
                                        str(entities_dir), *args])

    return run


@pytest.fixture
def bus(stack: DevStack) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(stack.connection_string) as client:
        yield client
