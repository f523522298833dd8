"""Shared fixtures: the tests start the real servers they need themselves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite on free ports for the whole test session."""
    with Azurite() as server:
        yield server


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string
