"""A local Event Grid: topics accept events from EventGridPublisherClient and push them on.

Each topic's endpoint is `http://127.0.0.1:<port>/topics/<topic>/api/events`; publishers
authenticate with the topic key (`aeg-sas-key`) or a SAS token (`aeg-sas-token`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote

import aiohttp
from aiohttp import web

from devstack.azurite import free_port
from devstack.eventgrid.config import CLOUD_EVENTS, EventGridConfig, Subscription, Topic
from devstack.eventgrid.delivery import SubscriptionDelivery
from devstack.eventgrid.filters import matches
from devstack.eventgrid.pending import FILE_NAME, Clock, PendingStore, SystemClock

log = logging.getLogger("devstack.eventgrid")
MAX_EVENT_BYTES = 1024 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
CLOUD_EVENT_REQUIRED = ("id", "source", "type", "specversion")
GRID_EVENT_REQUIRED = ("id", "subject", "eventType", "eventTime", "dataVersion")
FunctionEndpoint = Callable[[str], str]


class PublishError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LocalEventGrid:
    """Serves the configured topics and delivers to each matching subscription.

    `function_endpoint(name)` gives the webhook URL of an Azure Function destination (the
    devstack host's `event_grid_webhook`). `delay_scale` shrinks the retry schedule for tests.
    """

    def __init__(self, config: EventGridConfig, *, function_endpoint: FunctionEndpoint |
                 None = None, dead_letter_storage: str | None = None,
                 delay_scale: float = 1.0, attempt_timeout: float = 30.0,
                 port: int | None = None, bind: str = "127.0.0.1",
                 data_dir: Path | None = None, clock: Clock | None = None) -> None:
        self.config = config
        self.port = port or free_port(bind)
        self.bind = bind
        self._function_endpoint = function_endpoint
        self._dead_letter_storage = dead_letter_storage
        self._delay_scale = delay_scale
        self._attempt_timeout = attempt_timeout
        self._data_dir = data_dir
        self.clock: Clock = clock or SystemClock()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.deliveries: dict[tuple[str, str], SubscriptionDelivery] = {}

    def topic_endpoint(self, topic: str) -> str:
        return f"http://{self.bind}:{self.port}/topics/{topic}/api/events"

    def delivery(self, topic: str, subscription: str) -> SubscriptionDelivery:
        return self.deliveries[(topic.lower(), subscription.lower())]

    async def start(self) -> LocalEventGrid:
        unattached = [s.name for t in self.config.topics for s in t.subscriptions
                      if s.function_name and self._function_endpoint is None]
        if unattached:
            raise ValueError(f"subscriptions {unattached} deliver to functions, but no "
                             "Functions host is attached (function_endpoint)")
        self._session = aiohttp.ClientSession()
        store = PendingStore(self._data_dir / FILE_NAME if self._data_dir else None)
        for topic in self.config.topics:
            for subscription in topic.subscriptions:
                self.deliveries[(topic.name.lower(), subscription.name.lower())] = (
                    SubscriptionDelivery(
                        topic, subscription, endpoint=self._endpoint_of(subscription),
                        session=self._session, dead_letter_storage=self._dead_letter_storage,
                        delay_scale=self._delay_scale, attempt_timeout=self._attempt_timeout,
                        clock=self.clock, store=store))
        by_key = {delivery.key: delivery for delivery in self.deliveries.values()}
        for key, events in store.loaded().items():
            owner = by_key.get(key)
            if owner is None:
                log.warning("%d pending Event Grid event(s) of %s are not resumed: that "
                            "subscription is not in the config any more (kept in %s)",
                            len(events), key, store.path)
                continue
            for pending in events:
                owner.resume(pending)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES * 2)
        app.router.add_post("/topics/{topic}/api/events", self._publish)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.bind, self.port).start()
        for topic in self.config.topics:
            log.info("Event Grid topic %r (%s): %s", topic.name, topic.input_schema,
                     self.topic_endpoint(topic.name))
        return self

    async def stop(self) -> None:
        for delivery in self.deliveries.values():
            await delivery.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> LocalEventGrid:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def _endpoint_of(self, subscription: Subscription) -> Callable[[], str]:
        def endpoint() -> str:
            if subscription.endpoint_url:
                return subscription.endpoint_url
            assert self._function_endpoint is not None and subscription.function_name
            return self._function_endpoint(subscription.function_name)

        return endpoint

    async def _publish(self, request: web.Request) -> web.Response:
        topic = self.config.topic(request.match_info["topic"])
        if topic is None:
            return _error(404, f"topic {request.match_info['topic']!r} does not exist")
        if not _authorized(request, topic):
            return _error(401, "missing or invalid aeg-sas-key / aeg-sas-token")
        body = await request.read()
        try:
            events = _parse(topic, body)
        except PublishError as exc:
            return _error(exc.status, str(exc))
        published = self.clock.now()
        for event in events:
            for subscription in topic.subscriptions:
                if matches(subscription.filter, event):
                    self.delivery(topic.name, subscription.name).enqueue(event, published)
        return web.Response(status=200)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": str(status), "message": message}},
                             status=status)


def _authorized(request: web.Request, topic: Topic) -> bool:
    key = request.headers.get("aeg-sas-key")
    if key is not None:
        return hmac.compare_digest(key, topic.key)
    token = request.headers.get("aeg-sas-token")
    return token is not None and _valid_sas(token, topic.key)


def _valid_sas(token: str, key: str) -> bool:
    """A token from azure-eventgrid's generate_sas: `r=<resource>&e=<expiry>&s=<signature>`."""
    unsigned, _, signature = token.rpartition("&s=")
    fields = parse_qs(unsigned)
    if "e" not in fields or not signature:
        return False
    try:
        expiry = datetime.fromisoformat(fields["e"][0])
        digest = hmac.new(base64.b64decode(key), unsigned.encode("ascii"),
                          hashlib.sha256).digest()
    except ValueError:
        return False
    expected = quote(base64.b64encode(digest), safe="~()*!.'")
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return hmac.compare_digest(expected, signature) and expiry > datetime.now(UTC)


def _parse(topic: Topic, body: bytes) -> list[dict[str, Any]]:
    if len(body) > MAX_REQUEST_BYTES:
        raise PublishError(413, f"request is {len(body)} bytes; the limit is 1 MB")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise PublishError(400, f"body is not JSON: {exc}") from exc
    events = document if isinstance(document, list) else [document]
    if not isinstance(document, list) and topic.input_schema != CLOUD_EVENTS:
        raise PublishError(400, "Event Grid schema topics take a JSON array of events")
    required = CLOUD_EVENT_REQUIRED if topic.input_schema == CLOUD_EVENTS else \
        GRID_EVENT_REQUIRED
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise PublishError(400, f"event {index} is not a JSON object")
        missing = [name for name in required if not event.get(name)]
        if missing:
            raise PublishError(400, f"event {index} ({topic.input_schema}) lacks {missing}")
        if topic.input_schema == CLOUD_EVENTS and event["specversion"] != "1.0":
            raise PublishError(400, f"event {index}: specversion must be 1.0")
        if len(json.dumps(event)) > MAX_EVENT_BYTES:
            raise PublishError(413, f"event {index} is larger than 1 MB")
        if topic.input_schema != CLOUD_EVENTS:
            event.setdefault("topic", f"/subscriptions/devstack/resourceGroups/devstack/"
                                      f"providers/Microsoft.EventGrid/topics/{topic.name}")
            event.setdefault("metadataVersion", "1")
    return events
