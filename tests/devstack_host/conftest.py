"""Fixtures for the devstack host tests: the sample app run by a real host on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from devstack.azurite import Azurite
from devstack.host import FunctionsHost
from devstack.server import DevStack

SAMPLE_APP = Path(__file__).parent / "sample_app"
FUNCTION_KEY = "sample-function-key"
MASTER_KEY = "sample-master-key"

HostFactory = Callable[..., FunctionsHost]


@pytest.fixture
def host_storage(azurite: Azurite) -> Azurite:
    """The storage account behind AzureWebJobsStorage; modules may override it."""
    return azurite


@pytest.fixture
async def start_host(host_storage: Azurite) -> AsyncIterator[Callable[..., object]]:
    """Start the sample app with only the named functions; every host is stopped afterwards."""
    hosts: list[FunctionsHost] = []

    async def start(*functions: str, **settings: str) -> FunctionsHost:
        host = FunctionsHost(SAMPLE_APP, functions=functions, settings={
            "AzureWebJobsStorage": host_storage.connection_string,
            "DEVSTACK_HOST_FUNCTION_KEY": FUNCTION_KEY,
            "DEVSTACK_HOST_MASTER_KEY": MASTER_KEY,
            **settings,
        })
        hosts.append(host)
        return await host.start()

    yield start
    for host in hosts:
        await host.stop()


@pytest.fixture
def servicebus() -> Iterator[DevStack]:
    """A fresh devstack (Service Bus + Event Hubs) with the sample app's entities."""
    with DevStack([SAMPLE_APP / "devstack-entities.json",
                   SAMPLE_APP / "devstack-eventhubs.json"], port=0) as stack:
        yield stack
