"""A fault proxy for Azurite: an HTTP reverse proxy in front of its blob, queue and table
endpoints that makes storage misbehave the way Azure Storage sometimes does.

    with Azurite() as azurite, StorageProxy(azurite, seed=7) as proxy:
        TableServiceClient.from_connection_string(proxy.connection_string)
        proxy.faults.unavailable(share=0.1, service="table", resource="orders")

Every request is either forwarded untouched and answered with Azurite's answer, or refused
before it reaches Azurite (503, or held then cut off), so nothing is half-applied; the one
exception is `drop-response`, which applies a write and then cuts the connection instead of
answering, as when a response is lost on the way back (the client cannot tell whether its
write happened). A share of matching requests is hit, drawn from a seeded random stream.
`StorageProxy.faults` is the thread-safe API; `admin_port` serves the same faults over HTTP
(`POST /faults/<kind>?...`), in the shape of `devstack.faults`.

Written by hand: no maintained library proxies HTTP with per-request storage faults.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

from devstack.azurite import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from devstack.loop_thread import LoopThread

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("devstack.storageproxy")
UPSTREAM_KEEPALIVE_SECONDS = 2.0

UNAVAILABLE = "unavailable"
TIMEOUT = "timeout"
LATENCY = "latency"
DROP_RESPONSE = "drop-response"
KINDS = (UNAVAILABLE, TIMEOUT, LATENCY, DROP_RESPONSE)
SERVICES = ("blob", "queue", "table")
WRITES = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
# Hop-by-hop headers, and the ones aiohttp computes itself for the forwarded copy.
_NOT_FORWARDED = frozenset({"host", "content-length", "transfer-encoding", "connection",
                            "keep-alive", "upgrade"})
# Each operation inside a $batch body is a request line: `VERB http://.../<table>[(keys)] HTTP/1.1`.
_BATCH_TABLE = re.compile(rb"^[A-Z]+ \S*/([A-Za-z][A-Za-z0-9]{2,62})(?:\(\S*)? HTTP/1\.1\r?$",
                          re.MULTILINE)
_SERVER_BUSY_BODY = (
    '{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":'
    '"The server is busy (devstack storage fault injection)."}}}'
)


@dataclass(eq=False)
class StorageFault:
    """One armed fault: `kind` on a `share` of the requests that match `service` (blob,
    queue, table; None: any) and `resource` (a table, container or queue name; None: any),
    at most `times` times (None: until cleared). `seconds` is the added latency, or how long
    a timed-out request is held before its connection is cut."""

    kind: str
    share: float = 1.0
    service: str | None = None
    resource: str | None = None
    times: int | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"no storage fault {self.kind!r} (known: {', '.join(KINDS)})")
        if self.service is not None and self.service not in SERVICES:
            raise ValueError(f"no storage service {self.service!r} (known: {SERVICES})")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be between 0 and 1, not {self.share}")
        if self.resource is not None:
            self.resource = self.resource.lower()

    def matches(self, service: str, resources: set[str], method: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.kind == DROP_RESPONSE and method not in WRITES:
            return False
        return ((self.service is None or self.service == service)
                and (self.resource is None or self.resource in resources))


@dataclass(frozen=True)
class Decision:
    """What the proxy does to one request."""

    delay: float = 0.0
    fault: StorageFault | None = None
    """The refusing or response-dropping fault, if one hit."""


class StorageFaults:
    """The armed faults and what they did (touched on the proxy's event loop only)."""

    def __init__(self, seed: int) -> None:
        self.rules: list[StorageFault] = []
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._random = random.Random(seed)

    def decide(self, service: str, resources: set[str], method: str) -> Decision:
        self.requests[service] += 1
        delay, hit = 0.0, None
        for rule in self.rules:
            if (rule.kind == LATENCY or hit is None) and rule.matches(service, resources, method) \
                    and self._random.random() < rule.share:
                if rule.times is not None:
                    rule.times -= 1
                self.injected[rule.kind] += 1
                if rule.kind == LATENCY:
                    delay += rule.seconds
                else:
                    hit = rule
        return Decision(delay, hit)

    def clear(self) -> None:
        self.rules.clear()


def resources_of(service: str, path: str, body: bytes) -> set[str]:
    """The tables, containers or queues one request touches (lower case)."""
    parts = [unquote(part) for part in path.split("/") if part]
    if parts and parts[0] == ACCOUNT_NAME:
        parts = parts[1:]
    if not parts:
        return set()
    first = parts[0].split("(", 1)[0].lower()
    if service == "table" and first == "$batch":
        return {match.decode().lower() for match in _BATCH_TABLE.findall(body)}
    return {first}


class StorageProxy(LoopThread):
    """The proxy on its own thread and event loop, one listening port per Azurite service;
    a context manager. `connection_string` points the storage SDKs at the proxy."""

    def __init__(self, upstream: Azurite, *, seed: int = 0, host: str = "127.0.0.1",
                 admin_port: int | None = None) -> None:
        super().__init__("storage-proxy")
        self.upstream = upstream
        self.host = host
        self.ports: dict[str, int] = {}
        self.admin_port = admin_port
        """HTTP fault API port (None: no HTTP API; 0: a free port)."""
        self.state = StorageFaults(seed)
        self.faults = StorageFaultInjector(self)
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(
            f"{name.capitalize()}Endpoint=http://{self.host}:{port}/{ACCOUNT_NAME}"
            for name, port in self.ports.items())
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
                f"AccountKey={ACCOUNT_KEY};{endpoints};")

    @property
    def admin_url(self) -> str | None:
        """Base URL of the HTTP fault API, e.g. http://127.0.0.1:PORT (None when off)."""
        return None if self.admin_port is None else f"http://{self.host}:{self.admin_port}"

    # ---------------------------------------------------------------- proxying

    def _handler(self, service: str) -> Handler:
        upstream = f"http://{self.upstream.host}:{self.upstream.ports[service]}"

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            decision = self.state.decide(service, resources_of(service, request.path, body),
                                         request.method)
            if decision.delay:
                await asyncio.sleep(decision.delay)
            fault = decision.fault
            if fault is not None and fault.kind == UNAVAILABLE:
                return web.Response(status=503, text=_SERVER_BUSY_BODY,
                                    content_type="application/json",
                                    headers={"x-ms-error-code": "ServerBusy"})
            if fault is not None and fault.kind == TIMEOUT:
                await asyncio.sleep(fault.seconds)
                return _cut(request)
            assert self._session is not None
            headers = {name: value for name, value in request.headers.items()
                       if name.lower() not in _NOT_FORWARDED}
            try:
                async with self._session.request(
                        # As sent (still percent-encoded): Shared Key signs the encoded path.
                        request.method, URL(upstream + request.raw_path, encoded=True),
                        headers=headers, data=body if body else None) as answer:
                    answered = await answer.read()
            except aiohttp.ClientError as error:
                log.warning("storage proxy: %s %s: Azurite did not answer: %s", request.method,
                            request.path, error)
                return web.Response(status=502, text=f"Azurite did not answer: {error}")
            if fault is not None:  # drop-response: the write is applied, the answer lost
                return _cut(request)
            return web.Response(status=answer.status, body=answered, headers={
                name: value for name, value in answer.headers.items()
                if name.lower() not in _NOT_FORWARDED})

        return forward

    async def _open(self) -> None:
        # No header of the client's may be added or rewritten: Shared Key signs them.
        self._session = aiohttp.ClientSession(
            # Node (Azurite) closes idle keep-alive connections after 5 s; reusing one it is
            # closing resets the request, so idle ones are dropped sooner on this side.
            connector=aiohttp.TCPConnector(keepalive_timeout=UPSTREAM_KEEPALIVE_SECONDS),
            auto_decompress=False,
            skip_auto_headers=("Content-Type", "User-Agent", "Accept", "Accept-Encoding"))
        for service in self.upstream.ports:
            app = web.Application(client_max_size=256 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handler(service))
            port = await self._serve(app, self.ports.get(service, 0))
            self.ports[service] = port
        if self.admin_port is not None:
            self.admin_port = await self._serve(self.faults.http_app(), self.admin_port)

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, port).start()
        self._runners.append(runner)
        return int(runner.addresses[0][1])

    async def _close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ---------------------------------------------------------------- lifecycle

def _cut(request: web.Request) -> web.StreamResponse:
    """Close the client's connection without an answer."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never sent: the connection is already gone


class StorageFaultInjector:
    """Thread-safe fault API of a running StorageProxy (every call runs on its loop)."""

    def __init__(self, proxy: StorageProxy) -> None:
        self._proxy = proxy

    def arm(self, fault: StorageFault) -> StorageFault:
        """Arm `fault` (alongside the others); `disarm` it to end it early."""
        self._proxy.call(lambda: self._proxy.state.rules.append(fault))
        return fault

    def disarm(self, fault: StorageFault) -> None:
        """Remove one armed fault (a no-op if it is gone already)."""

        def remove() -> None:
            if fault in self._proxy.state.rules:
                self._proxy.state.rules.remove(fault)

        self._proxy.call(remove)

    def unavailable(self, share: float = 1.0, *, service: str | None = None,
                    resource: str | None = None, times: int | None = None) -> StorageFault:
        """Answer a share of the matching requests with 503 ServerBusy, not forwarded."""
        return self.arm(StorageFault(UNAVAILABLE, share, service, resource, times))

    def timeout(self, seconds: float, share: float = 1.0, *, service: str | None = None,
                resource: str | None = None, times: int | None = None) -> StorageFault:
        """Hold a share of the matching requests for `seconds`, then cut the connection
        without forwarding them."""
        return self.arm(StorageFault(TIMEOUT, share, service, resource, times, seconds))

    def latency(self, seconds: float, share: float = 1.0, *, service: str | None = None,
                resource: str | None = None, times: int | None = None) -> StorageFault:
        """Delay a share of the matching requests by `seconds` before forwarding them."""
        return self.arm(StorageFault(LATENCY, share, service, resource, times, seconds))

    def drop_response(self, share: float = 1.0, *, service: str | None = None,
                      resource: str | None = None, times: int | None = None) -> StorageFault:
        """Forward a share of the matching writes, then cut the connection instead of
        passing the answer on: the write is applied, the client never learns it."""
        return self.arm(StorageFault(DROP_RESPONSE, share, service, resource, times))

    def injected(self) -> dict[str, int]:
        """How many requests each kind of fault hit so far."""
        return self._proxy.call(lambda: dict(self._proxy.state.injected))

    def requests(self) -> dict[str, int]:
        """How many requests each service (blob, queue, table) received so far."""
        return self._proxy.call(lambda: dict(self._proxy.state.requests))

    def clear(self) -> None:
        """Remove every armed fault (the counts of what was injected stay)."""
        self._proxy.call(self._proxy.state.clear)

    def http_app(self) -> web.Application:
        """`POST /faults/<kind>?share=&service=&resource=&times=&seconds=` for each kind
        (unavailable, timeout, latency, drop-response), `POST /faults/clear`, and
        `GET /faults` (what was injected), answering JSON."""

        def fault_of(kind: str, query: Mapping[str, str]) -> StorageFault:
            times = query.get("times")
            return StorageFault(kind, float(query.get("share", "1")),
                                query.get("service") or None, query.get("resource") or None,
                                int(times) if times else None, float(query.get("seconds", "0")))

        def arm(kind: str) -> Handler:
            async def handle(request: web.Request) -> web.StreamResponse:
                try:
                    fault = fault_of(kind, request.query)
                except ValueError as error:
                    return web.json_response({"error": str(error)}, status=400)
                self._proxy.state.rules.append(fault)
                return web.json_response({"armed": kind})

            return handle

        async def clear(request: web.Request) -> web.Response:
            self._proxy.state.clear()
            return web.json_response({"cleared": True})

        async def injected(request: web.Request) -> web.Response:
            return web.json_response({"injected": dict(self._proxy.state.injected),
                                      "requests": dict(self._proxy.state.requests)})

        app = web.Application()
        for kind in KINDS:
            app.router.add_post(f"/faults/{kind}", arm(kind))
        app.router.add_post("/faults/clear", clear)
        app.router.add_get("/faults", injected)
        return app
