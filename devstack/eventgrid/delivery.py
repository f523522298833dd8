"""Push delivery to one subscription: retry schedule, TTL, and dead-letter to blob storage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import BlobServiceClient

from devstack.eventgrid.config import CLOUD_EVENTS, Subscription, Topic
from devstack.eventgrid.pending import Clock, PendingEvent, PendingStore

log = logging.getLogger("devstack.eventgrid")
# Event Grid's documented schedule after a failed attempt (then every 12 hours).
RETRY_SCHEDULE = (timedelta(seconds=10), timedelta(seconds=30), timedelta(minutes=1),
                  timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=30),
                  timedelta(hours=1), timedelta(hours=3), timedelta(hours=6))
LATER_RETRY = timedelta(hours=12)
# Webhook answers that retrying cannot fix: dead-letter at once.
NOT_RETRIED = {400: "UndeliverableDueToHttpBadRequest",
               413: "UndeliverableDueToHttpRequestEntityTooLarge"}
OUTCOMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            408: "TimedOut", 413: "RequestEntityTooLarge", 503: "Busy"}


def retry_delay(failed_attempts: int) -> timedelta:
    """The wait after the n-th failed attempt (1-based)."""
    if failed_attempts <= len(RETRY_SCHEDULE):
        return RETRY_SCHEDULE[failed_attempts - 1]
    return LATER_RETRY


@dataclass
class DeliveryStats:
    delivered: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    """Why each dead-lettered or dropped event was given up, by event id."""
    attempts: int = 0


class SubscriptionDelivery:
    """Delivers one subscription's events one at a time, as Event Grid does by default."""

    def __init__(self, topic: Topic, subscription: Subscription, *,
                 endpoint: Callable[[], str], session: aiohttp.ClientSession,
                 dead_letter_storage: str | None, delay_scale: float,
                 attempt_timeout: float, clock: Clock, store: PendingStore) -> None:
        self.topic = topic
        self.subscription = subscription
        self.key = f"{topic.name.lower()}/{subscription.name.lower()}"
        self._clock = clock
        self._store = store
        self._endpoint = endpoint
        self._session = session
        self._dead_letter_storage = dead_letter_storage
        self._delay_scale = delay_scale
        self._attempt_timeout = attempt_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = DeliveryStats()

    def enqueue(self, event: dict[str, Any], published: datetime) -> None:
        pending = PendingEvent(event, published)
        self._store.put(self.key, pending)
        self._spawn(self._deliver(pending))

    def resume(self, pending: PendingEvent) -> None:
        """Carry on with an event an earlier run had not finished (its attempts, due time
        and publish time kept, so the retry policy and TTL hold across the restart)."""
        self._spawn(self._deliver(pending))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, pending: PendingEvent) -> None:
        # The delay scale shrinks the TTL with the retry schedule, so tests keep Azure's ratio.
        ttl = timedelta(minutes=self.subscription.retry.event_ttl_minutes) * self._delay_scale
        expires = pending.published + ttl
        clock = self._clock
        while True:
            if pending.due is not None:
                if clock.now() > expires:  # it ran out while devstack was down
                    await self._dead_letter(pending, "TimeToLiveExceeded")
                    return
                remaining = (pending.due - clock.now()).total_seconds()
                if remaining > 0:
                    await clock.sleep(remaining)
            status = await self._attempt(pending)
            if status is not None and 200 <= status < 300:
                self.stats.delivered.append(str(pending.event.get("id")))
                self._store.remove(self.key, pending)
                return
            if status in NOT_RETRIED:
                await self._dead_letter(pending, NOT_RETRIED[status])
                return
            if pending.attempts >= self.subscription.retry.max_delivery_attempts:
                await self._dead_letter(pending, "MaxDeliveryAttemptsExceeded")
                return
            wait = retry_delay(pending.attempts) * self._delay_scale
            if clock.now() + wait > expires:
                await self._dead_letter(pending, "TimeToLiveExceeded")
                return
            pending.due = clock.now() + wait
            self._store.put(self.key, pending)

    async def _attempt(self, pending: PendingEvent) -> int | None:
        pending.attempts += 1
        pending.last_attempt = self._clock.now()
        self.stats.attempts += 1
        body: Any
        if self.topic.input_schema == CLOUD_EVENTS:
            body, content_type = pending.event, "application/cloudevents+json; charset=utf-8"
        else:
            body, content_type = [pending.event], "application/json; charset=utf-8"
        headers = {"Content-Type": content_type, "aeg-event-type": "Notification",
                   "aeg-subscription-name": self.subscription.name.upper(),
                   "aeg-delivery-count": str(pending.attempts - 1)}
        try:
            async with self._session.post(
                    self._endpoint(), data=json.dumps(body), headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self._attempt_timeout)) as response:
                pending.last_status = response.status
                pending.last_outcome = OUTCOMES.get(
                    response.status, "Succeeded" if response.status < 300 else "GenericError")
                return response.status
        except TimeoutError:
            pending.last_status, pending.last_outcome = 408, "TimedOut"
        except aiohttp.ClientError as exc:
            pending.last_status, pending.last_outcome = None, "Unreachable"
            log.warning("Event %s: subscription %r endpoint unreachable: %s",
                        pending.event.get("id"), self.subscription.name, exc)
        return pending.last_status

    async def _dead_letter(self, pending: PendingEvent, reason: str) -> None:
        event_id = str(pending.event.get("id"))
        container = self.subscription.dead_letter_container
        if container is None or self._dead_letter_storage is None:
            # Azure drops it here; say so loudly instead of silently.
            log.error("Event %s DROPPED by subscription %r after %d attempts (%s): no "
                      "dead-letter destination", event_id, self.subscription.name,
                      pending.attempts, reason)
            self.stats.dropped.append(event_id)
            self.stats.reasons[event_id] = reason
            self._store.remove(self.key, pending)
            return
        record = {**pending.event,
                  "deadLetterReason": reason,
                  "deliveryAttempts": pending.attempts,
                  "lastDeliveryOutcome": pending.last_outcome,
                  "lastHttpStatusCode": pending.last_status or 0,
                  "publishTime": pending.published.isoformat(),
                  "lastDeliveryAttemptTime": (pending.last_attempt or pending.published)
                  .isoformat()}
        await write_dead_letter(self._dead_letter_storage, container, self.subscription.name,
                                [record])
        self.stats.dead_lettered.append(event_id)
        self.stats.reasons[event_id] = reason
        self._store.remove(self.key, pending)
        log.warning("Event %s dead-lettered by subscription %r: %s after %d attempts",
                    event_id, self.subscription.name, reason, pending.attempts)


def dead_letter_blob_name(subscription: str, moment: datetime) -> str:
    """`SUBSCRIPTION/YYYY/M/D/H/<guid>.json`: upper-case name, hour not zero-padded."""
    return (f"{subscription.upper()}/{moment.year}/{moment.month}/{moment.day}/"
            f"{moment.hour}/{uuid.uuid4()}.json")


async def write_dead_letter(connection_string: str, container: str, subscription: str,
                            records: list[Mapping[str, Any]]) -> str:
    name = dead_letter_blob_name(subscription, datetime.now(UTC))
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        client = service.get_container_client(container)
        with contextlib.suppress(ResourceExistsError):
            await client.create_container()
        await client.upload_blob(name, json.dumps(records), overwrite=False)
    return name
