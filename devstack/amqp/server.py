"""The AMQP 1.0 listener: accepts connections and routes each link to the first node that
claims its address."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from devstack.amqp.connection import Connection, Link
from devstack.amqp.node import LinkHandler, Node, cbs_node

log = logging.getLogger("devstack.amqp")
T = TypeVar("T")


class AmqpServer:
    """Serves `nodes` (plus `$cbs`) on host:port; port 0 picks a free port."""

    def __init__(self, nodes: list[Node], host: str = "127.0.0.1", port: int = 5672) -> None:
        self.nodes: list[Node] = [cbs_node(), *nodes]
        self.host = host
        self.port = port
        self.connections: set[Connection] = set()
        self.write_delay = 0.0
        """Latency applied to connections opened from now on (fault injection)."""
        self._server: asyncio.Server | None = None

    def add_node(self, node: Node) -> None:
        """Register a node; links attached after this call can reach it."""
        self.nodes.append(node)

    def _route(self, link: Link) -> LinkHandler | asyncio.Future[LinkHandler] | None:
        for node in self.nodes:
            handler = node.open_link(link)
            if handler is not None:
                return handler
        return None

    def _new_connection(self) -> Connection:
        connection = _TrackedConnection(self)
        return connection

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.abort()
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> int:
        """Abort every client connection without a close frame; return how many."""
        dropped = list(self.connections)
        for connection in dropped:
            connection.abort()
        return len(dropped)


class _TrackedConnection(Connection):
    def __init__(self, server: AmqpServer) -> None:
        super().__init__(server._route, server.nodes)
        self._owner = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write_delay = self._owner.write_delay
        self._owner.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.connections.discard(self)
        super().connection_lost(exc)


class ServerThread:
    """Runs an AmqpServer on its own thread and event loop (for tests and embedding).

    `with ServerThread(AmqpServer(nodes, port=0)) as running: running.port`
    """

    def __init__(self, server: AmqpServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="devstack-amqp", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop and return its result (thread-safe)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
