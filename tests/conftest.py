"""Shared fixtures: the tests start the real servers they need themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azurite import Azurite
from devstack.llm import LocalModelServer
from devstack.server import DevStack

ENTITY_CONFIGS = Path(__file__).resolve().parent.parent / "infra" / "entities"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite on free ports for the whole test session."""
    with Azurite() as server:
        yield server


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture(scope="session")
def devstack() -> Iterator[DevStack]:
    """One in-memory devstack (Service Bus + Event Hubs) on a free port for the session,
    with the app's entities from infra/entities/. Use `.connection_string`, `.faults`."""
    configs = [ENTITY_CONFIGS / "servicebus.json", ENTITY_CONFIGS / "eventhubs.json"]
    with DevStack(configs, port=0) as stack:
        yield stack


@pytest.fixture
def local_model() -> Iterator[LocalModelServer]:
    """devstack's local model endpoint on a free port (Azure OpenAI and OpenAI REST shapes);
    `.base_url`, `.openai_base_url`, `.faults`, `.requests`. Build your own
    `LocalModelServer(port=0, clock=...)` to move an outage's clock by hand."""
    with LocalModelServer(port=0) as server:
        yield server
