"""Service Bus triggers through the official SDK: peek-lock, settle, sessions, lock renewal.

Settlement follows the Functions host: with autoCompleteMessages (host.json, or the
trigger's own `autoCompleteMessages`) the message is completed after success and abandoned
after an exception. Without it the function settles through a `message_actions` parameter
(the shape of azurefunctions-extensions-bindings-servicebus' ServiceBusMessageActions); a
message it leaves unsettled is abandoned if the function threw, else its lock runs out.
Function-level retry policies do not apply: Service Bus redelivers by its delivery count.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessage as FunctionMessage
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
)
from azure.servicebus.aio import AutoLockRenewer as AsyncAutoLockRenewer
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from devstack.host.index import FunctionSpec
from devstack.host.invocation import Invoker
from devstack.host.settings import AppSettings, HostConfig, option, parse_timespan

log = logging.getLogger("devstack.host")
MESSAGE_ACTIONS_PARAMETER = "message_actions"


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _body(message: ServiceBusReceivedMessage) -> bytes:
    if message.body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    body = message.body
    return body if isinstance(body, bytes) else json.dumps(body, default=str).encode()


def _user_properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    return {str(_text(k)): _text(v) for k, v in (message.application_properties or {}).items()}


def _datum(value: Any) -> meta.Datum:
    if isinstance(value, bool | int):
        return meta.Datum(int(value), "int")
    if isinstance(value, dict):
        return meta.Datum(json.dumps(value, default=str), "json")
    if isinstance(value, datetime):
        return meta.Datum(value.isoformat(), "string")
    return meta.Datum(str(value), "string")


def to_function_message(message: ServiceBusReceivedMessage) -> FunctionMessage:
    """The `func.ServiceBusMessage` the host builds from a received message."""
    properties = _user_properties(message)
    enqueued = message.enqueued_time_utc
    # The SDK gives the AMQP header (prior attempts); the host, like .NET, counts this one too.
    delivery_count = (message.delivery_count or 0) + 1
    metadata = {
        "MessageId": message.message_id, "DeliveryCount": delivery_count,
        "SequenceNumber": message.sequence_number, "EnqueuedTimeUtc": enqueued,
        "LockToken": message.lock_token, "SessionId": message.session_id,
        "ContentType": message.content_type, "CorrelationId": message.correlation_id,
        "Label": message.subject, "UserProperties": properties,
        "ApplicationProperties": properties,
    }
    return FunctionMessage(
        body=_body(message),
        trigger_metadata={k: _datum(v) for k, v in metadata.items() if v is not None},
        application_properties=properties,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=enqueued,
        expires_at_utc=message.expires_at_utc,
        label=message.subject,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token),
        message_id=str(message.message_id),
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        state=int(message.state),
        subject=message.subject,
        time_to_live=message.time_to_live,
        to=message.to,
        transaction_partition_key=None,
        user_properties=properties,
    )


class MessageActions:
    """Settles the messages of one invocation, named by their lock token."""

    def __init__(self, receiver: ServiceBusReceiver,
                 received: Sequence[ServiceBusReceivedMessage]) -> None:
        self._receiver = receiver
        self._by_token = {str(m.lock_token): m for m in received}
        self.settled: set[str] = set()

    def _message(self, message: func.ServiceBusMessage) -> ServiceBusReceivedMessage:
        token = str(message.lock_token)
        if token in self.settled:
            raise ValueError(f"message {message.message_id} is already settled")
        self.settled.add(token)
        return self._by_token[token]

    async def complete(self, message: func.ServiceBusMessage) -> None:
        await self._receiver.complete_message(self._message(message))

    async def abandon(self, message: func.ServiceBusMessage) -> None:
        await self._receiver.abandon_message(self._message(message))

    async def deadletter(self, message: func.ServiceBusMessage, *,
                         deadletter_reason: str | None = None,
                         deadletter_error_description: str | None = None) -> None:
        await self._receiver.dead_letter_message(
            self._message(message), reason=deadletter_reason,
            error_description=deadletter_error_description)

    async def defer(self, message: func.ServiceBusMessage) -> None:
        await self._receiver.defer_message(self._message(message))

    def unsettled(self) -> list[ServiceBusReceivedMessage]:
        return [m for token, m in self._by_token.items() if token not in self.settled]


class ThreadMessageActions:
    """MessageActions for a sync function: blocking calls from its worker thread."""

    def __init__(self, actions: MessageActions, loop: asyncio.AbstractEventLoop) -> None:
        self._actions = actions
        self._loop = loop

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def complete(self, message: func.ServiceBusMessage) -> None:
        self._run(self._actions.complete(message))

    def abandon(self, message: func.ServiceBusMessage) -> None:
        self._run(self._actions.abandon(message))

    def deadletter(self, message: func.ServiceBusMessage, *,
                   deadletter_reason: str | None = None,
                   deadletter_error_description: str | None = None) -> None:
        self._run(self._actions.deadletter(
            message, deadletter_reason=deadletter_reason,
            deadletter_error_description=deadletter_error_description))

    def defer(self, message: func.ServiceBusMessage) -> None:
        self._run(self._actions.defer(message))


class ServiceBusListener:
    """Receives for one Service Bus triggered function until cancelled."""

    def __init__(self, spec: FunctionSpec, settings: AppSettings, config: HostConfig,
                 invoker: Invoker) -> None:
        self.spec = spec
        trigger = spec.trigger
        self._connection = settings.connection(str(trigger["connection"]))
        self._queue = settings.resolve(str(trigger["queueName"])) if trigger.get(
            "queueName") else None
        self._topic = settings.resolve(str(trigger["topicName"])) if trigger.get(
            "topicName") else None
        self._subscription = settings.resolve(str(trigger["subscriptionName"])) if trigger.get(
            "subscriptionName") else None
        if not self._queue and not (self._topic and self._subscription):
            raise ValueError(f"{spec.name}: needs queueName, or topicName and subscriptionName")
        options = config.extension("serviceBus")
        self._sessions = bool(trigger.get("isSessionsEnabled"))
        self._many = str(trigger.get("cardinality", "ONE")).upper() == "MANY"
        self._max_calls = int(option(options, "maxConcurrentCalls", 16))
        self._max_sessions = int(option(options, "maxConcurrentSessions", 8))
        self._prefetch = int(option(options, "prefetchCount", 0))
        self._batch_size = int(option(options, "maxMessageBatchSize", 1000))
        self._lock_renewal = parse_timespan(str(option(
            options, "maxAutoLockRenewalDuration", "00:05:00"))).total_seconds()
        self._session_idle = parse_timespan(str(option(
            options, "sessionIdleTimeout", "00:00:01"))).total_seconds()
        auto_complete = trigger.get("autoCompleteMessages")
        self._auto_complete = bool(option(options, "autoCompleteMessages", True)
                                   if auto_complete is None else auto_complete)
        self._wants_actions = MESSAGE_ACTIONS_PARAMETER in inspect.signature(
            spec.handler).parameters
        self._invoker = invoker

    @property
    def entity(self) -> str:
        return self._queue or f"{self._topic}/Subscriptions/{self._subscription}"

    def _receiver(self, client: ServiceBusClient, **kwargs: Any) -> ServiceBusReceiver:
        common: dict[str, Any] = {"receive_mode": ServiceBusReceiveMode.PEEK_LOCK,
                                  "prefetch_count": self._prefetch, **kwargs}
        if self._queue:
            return client.get_queue_receiver(self._queue, **common)
        assert self._topic and self._subscription
        return client.get_subscription_receiver(self._topic, self._subscription, **common)

    async def run(self) -> None:
        log.info("Function 'Functions.%s' listening on Service Bus %s (sessions=%s)",
                 self.spec.name, self.entity, self._sessions)
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10),
                                           retry=retry_if_exception_type(ServiceBusError),
                                           before_sleep=self._log_reconnect):
            with attempt:
                async with ServiceBusClient.from_connection_string(self._connection) as client:
                    if self._sessions:
                        await asyncio.gather(*(self._session_loop(client)
                                               for _ in range(self._max_sessions)))
                    else:
                        await self._pump(client)

    def _log_reconnect(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("Function 'Functions.%s': Service Bus %s unavailable (%s); reconnecting",
                    self.spec.name, self.entity, error)

    async def _pump(self, client: ServiceBusClient) -> None:
        slots = asyncio.Semaphore(self._max_calls)
        running: set[asyncio.Task[None]] = set()
        async with self._receiver(client) as receiver, \
                AsyncAutoLockRenewer(max_lock_renewal_duration=self._lock_renewal) as renewer:
            try:
                while True:
                    await slots.acquire()
                    count = self._batch_size if self._many else 1
                    received = await receiver.receive_messages(max_message_count=count,
                                                               max_wait_time=1)
                    if not received:
                        slots.release()
                        continue
                    for message in received:
                        renewer.register(receiver, message)
                    task = asyncio.create_task(self._handle(receiver, received))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    task.add_done_callback(lambda _: slots.release())
            finally:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

    async def _session_loop(self, client: ServiceBusClient) -> None:
        while True:
            try:
                receiver = self._receiver(client, session_id=NEXT_AVAILABLE_SESSION,
                                          max_wait_time=self._session_idle)
                async with receiver, AsyncAutoLockRenewer(
                        max_lock_renewal_duration=self._lock_renewal) as renewer:
                    assert receiver.session is not None
                    renewer.register(receiver, receiver.session)
                    # One message at a time: a session is processed in order.
                    async for message in receiver:
                        await self._handle(receiver, [message])
            except OperationTimeoutError:
                continue  # no session was available; ask again

    async def _handle(self, receiver: ServiceBusReceiver,
                      received: Sequence[ServiceBusReceivedMessage]) -> None:
        messages = [to_function_message(m) for m in received]
        actions = MessageActions(receiver, received)
        extra: dict[str, Any] = {}
        if self._wants_actions:
            extra[MESSAGE_ACTIONS_PARAMETER] = actions if self.spec.is_async else (
                ThreadMessageActions(actions, asyncio.get_running_loop()))
        value: Any = messages if self._many else messages[0]
        first = received[0]
        try:
            await self._invoker.invoke(
                self.spec, value, use_retry_policy=False, extra_arguments=extra,
                reason=f"(null)MessageReceived (MessageId={first.message_id}, "
                       f"DeliveryCount={(first.delivery_count or 0) + 1}, "
                       f"LockToken={first.lock_token})")
        except Exception:
            await self._settle_all(receiver, actions, complete=False)
            return
        if self._auto_complete:
            await self._settle_all(receiver, actions, complete=True)

    async def _settle_all(self, receiver: ServiceBusReceiver, actions: MessageActions, *,
                          complete: bool) -> None:
        for message in actions.unsettled():
            with contextlib.suppress(ServiceBusError):
                # A lost lock means the message is redelivered anyway; nothing is dropped.
                if complete:
                    await receiver.complete_message(message)
                else:
                    await receiver.abandon_message(message)
