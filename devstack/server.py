"""DevStack: Service Bus (and Event Hubs, when its package provides a node) over AMQP 1.0,
in one process, started from emulator-shaped config files.

    with DevStack(configs=["infra/entities/servicebus.json"], port=0) as stack:
        ServiceBusClient.from_connection_string(stack.connection_string)

Hook for the Functions host (another package): `DevStack.connection_string` and `.port`
are all it needs; start the host after `start()` returns and stop it before `stop()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from devstack.amqp.node import Node
from devstack.amqp.server import AmqpServer
from devstack.config import LoadedConfig, load_configs, merge_namespaces
from devstack.faults import FaultInjector, Faults
from devstack.loop_thread import LoopThread
from devstack.servicebus.admin import AdminApi
from devstack.servicebus.node import ServiceBusNode
from devstack.servicebus.persistence import load_snapshot, save_snapshot

log = logging.getLogger("devstack")

ConfigSource = str | Path | Mapping[str, Any]
SNAPSHOT_SECONDS = 2.0
MANAGEMENT_PORT = 5300
"""Microsoft's emulator serves its administration API and /health here."""


def connection_string(host: str, port: int) -> str:
    """The emulator connection string the SDKs accept; the port only when not 5672."""
    endpoint = "localhost" if port == 5672 else f"localhost:{port}"
    del host
    return (
        f"Endpoint=sb://{endpoint};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
    )


class DevStack(LoopThread):
    """The devstack server on its own thread and event loop; a context manager."""

    def __init__(
        self,
        configs: Sequence[ConfigSource] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 5672,
        data_dir: str | Path | None = None,
        admin_port: int | None = None,
        management_port: int | None = None,
    ) -> None:
        super().__init__("devstack")
        self.config: LoadedConfig = load_configs(configs)
        self.host = host
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.fault_state = Faults()
        self.faults = FaultInjector(self)
        self.servicebus: ServiceBusNode | None = None
        self.eventhubs: Node | None = None
        self.amqp = AmqpServer([], host=host, port=port)
        self.admin_port = admin_port
        """HTTP fault-injection API port (None: no HTTP API; 0: a free port)."""
        self._admin: web.AppRunner | None = None
        self.management_port = management_port
        """Service Bus administration API and /health (the emulator's 5300; None: off;
        0: a free port)."""
        self._management: web.AppRunner | None = None
        self._snapshot_timer: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        return self.amqp.port

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)

    # ---------------------------------------------------------------- lifecycle

    async def _open(self) -> None:
        namespace = merge_namespaces(self.config.servicebus)
        self.servicebus = ServiceBusNode(namespace, self.fault_state)
        if self.data_dir is not None:
            load_snapshot(self.servicebus.broker, self.data_dir)
            self._schedule_snapshot(self.servicebus, self.data_dir, None)
        self.servicebus.start()
        self.amqp.add_node(self.servicebus)
        if self.config.eventhubs:
            from devstack.eventhubs import create_node  # only when hubs are configured

            self.eventhubs = create_node(self.config.eventhubs, data_dir=self.data_dir,
                                         faults=self.fault_state)
            self.amqp.add_node(self.eventhubs)
        await self.amqp.start()
        if self.admin_port is not None:
            self._admin = web.AppRunner(self.faults.http_app())
            await self._admin.setup()
            site = web.TCPSite(self._admin, self.host, self.admin_port)
            await site.start()
            self.admin_port = self._admin.addresses[0][1]
        if self.management_port is not None:
            self._management = web.AppRunner(AdminApi(self.servicebus.broker).app())
            await self._management.setup()
            await web.TCPSite(self._management, self.host, self.management_port).start()
            self.management_port = self._management.addresses[0][1]

    def _schedule_snapshot(self, node: ServiceBusNode, directory: Path,
                           saved: tuple[int, int] | None) -> None:
        """Save the Service Bus state every SNAPSHOT_SECONDS when it changed, so a killed
        server loses at most that much."""

        def save() -> None:
            state = node.broker.fingerprint()
            if state != saved:
                save_snapshot(node.broker, directory)
            self._schedule_snapshot(node, directory, state)

        self._snapshot_timer = self._loop.call_later(SNAPSHOT_SECONDS, save)

    @property
    def admin_url(self) -> str | None:
        """Base URL of the HTTP fault API, e.g. http://127.0.0.1:PORT (None when off)."""
        return None if self._admin is None else f"http://{self.host}:{self.admin_port}"

    @property
    def management_connection_string(self) -> str | None:
        """The connection string for ServiceBusAdministrationClient (None when off)."""
        if self._management is None or self.management_port is None:
            return None
        return connection_string(self.host, self.management_port)

    async def _close(self) -> None:
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
        if self._admin is not None:
            await self._admin.cleanup()
        if self._management is not None:
            await self._management.cleanup()
        await self.amqp.stop()
        if self.servicebus is not None:
            self.servicebus.stop()
            if self.data_dir is not None:
                save_snapshot(self.servicebus.broker, self.data_dir)
        closer = getattr(self.eventhubs, "close", None)
        if callable(closer):
            result = closer()
            if asyncio.iscoroutine(result):
                await result

    def wait(self) -> None:
        """Block until the server stops."""
        self._thread.join()
