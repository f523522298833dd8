"""Waiting on conditions with a generous deadline (never a fixed sleep that races)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from azure.storage.blob.aio import BlobServiceClient


async def eventually(condition: Callable[[], Any], *, timeout: float = 30.0,
                     interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def read_json_blobs(connection_string: str, container: str,
                          prefix: str) -> list[Any]:
    """Every JSON blob under prefix; an absent container reads as empty."""
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        client = service.get_container_client(container)
        if not await client.exists():
            return []
        found = []
        async for blob in client.list_blobs(name_starts_with=prefix):
            downloaded = await client.download_blob(blob.name)
            found.append(json.loads(await downloaded.readall()))
        return found
