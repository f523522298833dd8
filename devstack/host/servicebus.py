"""Service Bus triggers through the official SDK: peek-lock, settle, sessions, lock renewal.

The function gets the classic `func.ServiceBusMessage`, or, for a parameter annotated with
azurefunctions-extensions-bindings-servicebus' `ServiceBusReceivedMessage`, the SDK-type
binding (built by the package's own converter from the bytes the Azure host sends; see
`sdktype`). Settlement follows the Functions host: with autoCompleteMessages (host.json, or
the trigger's own `autoCompleteMessages`) the message is completed after success and
abandoned after an exception. A function may settle it itself through a parameter annotated
`ServiceBusMessageActions`, which talks gRPC to this host's settlement service (`settlement`)
as it talks to the Azure host's; a message it leaves unsettled is abandoned if the function
threw, else (autoCompleteMessages off) its lock runs out.
Function-level retry policies do not apply: Service Bus redelivers by its delivery count.
A listener never stops on an error: it logs it and reconnects with backoff.
A message is settled on the link that delivered it, as by the .NET client Azure's host uses:
once that link is gone (the connection dropped), its settlement fails with lock lost and the
broker redelivers it when the lock runs out; the function still runs to completion.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

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
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusConnectionError,
)

from devstack.host import sdktype
from devstack.host.index import FunctionSpec
from devstack.host.invocation import Invoker
from devstack.host.settings import AppSettings, HostConfig, option, parse_timespan
from devstack.host.settlement import SETTLE_TIMEOUT_SECONDS, AlreadySettled, SettlementService

log = logging.getLogger("devstack.host")
RECONNECT_BASE_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 10.0
HEALTHY_SECONDS = 30.0  # connected this long: the next failure backs off from the start
# A receive holds its link while it waits, so a settlement waits at most this long for it.
RECEIVE_WAIT_SECONDS = 0.2
T = TypeVar("T")


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


class ReceiveLink:
    """One receiver's link, used by one operation at a time.

    The aio receiver is not safe for concurrent operations across a connection loss: the
    operation that meets it closes the handler while another one is using it, which then
    fails inside the SDK ("Handler shutting down", `'NoneType' object has no attribute
    '_connection'` on `<entity>/$management`). Once an operation met a broken connection the
    link is lost, and settling what it delivered fails with lock lost without calling the
    SDK, whose retry would otherwise settle it over a new connection where Azure's host
    cannot."""

    def __init__(self, receiver: ServiceBusReceiver) -> None:
        self.receiver = receiver
        self._turn = asyncio.Lock()
        self._lost: BaseException | None = None

    async def receive(self, count: int) -> list[ServiceBusReceivedMessage]:
        async with self._turn:
            self._raise_if_lost()
            try:
                return await self.receiver.receive_messages(max_message_count=count,
                                                            max_wait_time=RECEIVE_WAIT_SECONDS)
            except BaseException as error:
                self._lost = error
                raise

    async def settle(self, operation: Callable[[ServiceBusReceiver], Awaitable[T]]) -> T:
        async with self._turn:
            self._raise_if_lost()
            try:
                return await operation(self.receiver)
            except ServiceBusConnectionError as error:
                self._lost = error
                self._raise_if_lost()
                raise

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise MessageLockLostError(
                message="The lock supplied is invalid: the link that delivered the message "
                        f"is gone ({type(self._lost).__name__}: {self._lost}).",
                error=self._lost)


class HeldLocks:
    """The messages of one invocation, settled by lock token (at most once each)."""

    def __init__(self, link: ReceiveLink,
                 received: Sequence[ServiceBusReceivedMessage]) -> None:
        self._link = link
        self._by_token = {str(m.lock_token): m for m in received}
        self.settled: set[str] = set()

    def _take(self, lock_token: str) -> ServiceBusReceivedMessage:
        if lock_token in self.settled:
            raise AlreadySettled(f"the message with lock token {lock_token} is already "
                                 "settled")
        self.settled.add(lock_token)
        return self._by_token[lock_token]

    async def complete(self, lock_token: str) -> None:
        message = self._take(lock_token)
        await self._link.settle(lambda r: r.complete_message(message))

    async def abandon(self, lock_token: str) -> None:
        message = self._take(lock_token)
        await self._link.settle(lambda r: r.abandon_message(message))

    async def deadletter(self, lock_token: str, reason: str | None,
                         description: str | None) -> None:
        message = self._take(lock_token)
        await self._link.settle(lambda r: r.dead_letter_message(
            message, reason=reason, error_description=description))

    async def defer(self, lock_token: str) -> None:
        message = self._take(lock_token)
        await self._link.settle(lambda r: r.defer_message(message))

    async def renew_lock(self, lock_token: str) -> None:
        if lock_token in self.settled:
            raise AlreadySettled(f"the message with lock token {lock_token} is already "
                                 "settled")
        message = self._by_token[lock_token]
        await self._link.settle(lambda r: r.renew_message_lock(message))

    @property
    def tokens(self) -> list[str]:
        return list(self._by_token)

    def unsettled(self) -> list[ServiceBusReceivedMessage]:
        return [m for token, m in self._by_token.items() if token not in self.settled]


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
        annotations = sdktype.annotations_of(spec.handler)
        trigger_type = annotations.get(str(trigger["name"]))
        # The worker's rules: an SDK-typed trigger parameter gets the SDK type; the one
        # parameter no binding fills whose type is the settlement client gets the client.
        self._sdk_type = trigger_type if sdktype.is_sdk_type(trigger_type) else None
        bound = {str(trigger["name"]), *(str(b["name"]) for b in spec.outputs),
                 spec.context_parameter()}
        self._settlement_parameters = [
            name for name in spec.parameters
            if name not in bound and sdktype.is_settlement_client(annotations.get(name))]
        self._settlement = SettlementService.shared() if self._settlement_parameters else None
        if self._settlement is not None and spec.is_async:
            log.warning("Function 'Functions.%s' is async and takes ServiceBusMessageActions, "
                        "whose calls block: in devstack's in-process host they wait for the "
                        "event loop they block (each fails after %ss); make it sync",
                        spec.name, SETTLE_TIMEOUT_SECONDS)
        self._invoker = invoker
        self._slots = asyncio.Semaphore(self._max_calls)
        self._running: set[asyncio.Task[None]] = set()

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
        """Listen until cancelled; any error (the SDK raises more than ServiceBusError when
        a connection breaks) is logged and the listener reconnects after a backoff."""
        log.info("Function 'Functions.%s' listening on Service Bus %s (sessions=%s)",
                 self.spec.name, self.entity, self._sessions)
        try:
            await self._listen()
        finally:
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _listen(self) -> None:
        # No retries inside the SDK: a retried operation reconnects on its own, and the
        # receivers reconnect instead (see ReceiveLink). Each receiver has its connection.
        async with ServiceBusClient.from_connection_string(self._connection,
                                                           retry_total=0) as client:
            if self._sessions:
                # Each session receiver reconnects on its own: one that fails leaves the
                # others' invocations running.
                await asyncio.gather(*(self._reconnecting(lambda: self._session_loop(client))
                                       for _ in range(self._max_sessions)))
            else:
                await self._reconnecting(lambda: self._pump(client))

    async def _reconnecting(self, receive: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            try:
                await receive()
            except Exception as error:
                # Hand-written, not tenacity: its attempt count never resets, and a listener
                # that was healthy for a while should reconnect at once.
                healthy = loop.time() - started > HEALTHY_SECONDS
                failures = 1 if healthy else failures + 1
                delay = min(RECONNECT_BASE_SECONDS * 2 ** (failures - 1),
                            RECONNECT_MAX_SECONDS)
                log.warning("Function 'Functions.%s': Service Bus %s unavailable (%s: %s); "
                            "reconnecting in %.1fs", self.spec.name, self.entity,
                            type(error).__name__, error, delay)
                await asyncio.sleep(delay)

    async def _pump(self, client: ServiceBusClient) -> None:
        async with self._receiver(client) as receiver, \
                AsyncAutoLockRenewer(max_lock_renewal_duration=self._lock_renewal) as renewer:
            link = ReceiveLink(receiver)
            while True:
                await self._slots.acquire()
                try:
                    received = await link.receive(self._batch_size if self._many else 1)
                except BaseException:
                    self._slots.release()
                    raise
                if not received:
                    self._slots.release()
                    continue
                for message in received:
                    renewer.register(receiver, message)
                # Invocations outlive a broken receiver, as on Azure: they finish, and
                # settling on the lost link fails with lock lost and is logged.
                task = asyncio.create_task(self._handle(link, received))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                task.add_done_callback(lambda _: self._slots.release())

    async def _session_loop(self, client: ServiceBusClient) -> None:
        while True:
            try:
                receiver = self._receiver(client, session_id=NEXT_AVAILABLE_SESSION,
                                          max_wait_time=self._session_idle)
                async with receiver, AsyncAutoLockRenewer(
                        max_lock_renewal_duration=self._lock_renewal) as renewer:
                    assert receiver.session is not None
                    renewer.register(receiver, receiver.session)
                    link = ReceiveLink(receiver)
                    # One message at a time: a session is processed in order.
                    async for message in receiver:
                        await self._handle(link, [message])
            except OperationTimeoutError:
                continue  # no session was available; ask again

    def _argument(self, received: Sequence[ServiceBusReceivedMessage]) -> Any:
        if self._sdk_type is not None:
            return sdktype.decode(received, many=self._many, pytype=self._sdk_type)
        messages = [to_function_message(m) for m in received]
        return messages if self._many else messages[0]

    async def _handle(self, link: ReceiveLink,
                      received: Sequence[ServiceBusReceivedMessage]) -> None:
        """Invoke and settle; nothing raised here escapes the task (a lost lock, a dropped
        connection: the message is redelivered, and that is logged)."""
        held = HeldLocks(link, received)
        loop = asyncio.get_running_loop()
        if self._settlement is not None:
            for token in held.tokens:
                self._settlement.servicer.hold(token, held, loop)
        first = received[0]
        try:
            extra = {name: sdktype.settlement_client() for name in self._settlement_parameters}
            await self._invoker.invoke(
                self.spec, self._argument(received), use_retry_policy=False,
                extra_arguments=extra,
                reason=f"(null)MessageReceived (MessageId={first.message_id}, "
                       f"DeliveryCount={(first.delivery_count or 0) + 1}, "
                       f"LockToken={first.lock_token})")
        except Exception:
            await self._settle_unsettled(held, complete=False)  # the invoker logged why
        else:
            if self._auto_complete:
                await self._settle_unsettled(held, complete=True)
        finally:
            if self._settlement is not None:
                for token in held.tokens:
                    self._settlement.servicer.release(token)

    async def _settle_unsettled(self, held: HeldLocks, *, complete: bool) -> None:
        settle: Callable[[str], Awaitable[None]] = held.complete if complete else held.abandon
        for message in held.unsettled():
            try:
                await settle(str(message.lock_token))
            except Exception as error:
                # A lost lock or a broken link: the broker redelivers the message anyway.
                log.warning("Function 'Functions.%s': could not %s message %s (%s: %s); it "
                            "is redelivered when its lock expires", self.spec.name,
                            "complete" if complete else "abandon", message.message_id,
                            type(error).__name__, error)
