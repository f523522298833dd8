"""Service Bus over AMQP: the links and `$management` operations the official SDK uses."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from devstack.amqp.codec import Array, Described, Symbol, Timestamp, ULong
from devstack.amqp.connection import Connection, IncomingDelivery, Link, OutgoingDelivery
from devstack.amqp.frames import (
    ACCEPTED,
    ACCEPTED_STATE,
    MODIFIED,
    REJECTED,
    RELEASED,
    SOURCE,
    AmqpError,
    rejected,
    state_code,
)
from devstack.amqp.message import BATCH_FORMAT, Message
from devstack.amqp.node import (
    LinkHandler,
    ManagementNode,
    ManagementRequest,
    ManagementResponse,
    Node,
    management_error,
)
from devstack.faults import Faults
from devstack.servicebus.broker import (
    LOCK_LOST,
    MESSAGE_NOT_FOUND,
    SESSION_LOCK_LOST,
    Broker,
    MessageEntity,
    MessageSession,
)
from devstack.servicebus.entities import NamespaceSpec
from devstack.servicebus.store import State, StoredMessage, now_ms

log = logging.getLogger("devstack.servicebus")

SESSION_FILTER = Symbol("com.microsoft:session-filter")
SESSION_LOCKED_UNTIL = Symbol("com.microsoft:locked-until-utc")
DATETIMEOFFSET_EPOCH = 621355968000000000
""".NET ticks (100 ns) at the Unix epoch: session lock times are sent as .NET ticks."""
MANAGEMENT_SUFFIX = "/$management"
TICK_SECONDS = 0.05
NEXT_SESSION_WAIT = 60.0
"""How long a next-available-session receiver's attach waits for a session (Azure's
default operation timeout)."""
_LIST_ALL_SESSIONS = 253402300800000
"""`last-updated-time` meaning "no filter" (.NET DateTime.MaxValue in ms)."""
_STATUS_BY_CONDITION = {LOCK_LOST: 410, SESSION_LOCK_LOST: 410, MESSAGE_NOT_FOUND: 404}


def _ticks(ms: int) -> int:
    return DATETIMEOFFSET_EPOCH + ms * 10_000


class _SenderLinkHandler(LinkHandler):
    """A client's sender: every message (or batch) goes into the broker."""

    def __init__(self, broker: Broker, path: str) -> None:
        self._broker = broker
        self._path = path

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        faults = self._broker.faults
        if faults is not None and faults.hold_send(
                self._path, lambda: self._settle_held(link, delivery)):
            return None
        self._store(delivery)
        return ACCEPTED_STATE

    def _store(self, delivery: IncomingDelivery) -> None:
        broker = self._broker
        if delivery.message_format == BATCH_FORMAT:
            for data in Message(delivery.payload).data_sections():
                broker.send(self._path, StoredMessage.from_payload(data))
        else:
            broker.send(self._path, StoredMessage.from_payload(delivery.payload))

    def _settle_held(self, link: Link, delivery: IncomingDelivery) -> None:
        if link.detached:  # the client gave up: it will send again
            return
        try:
            self._store(delivery)
            state: Described = ACCEPTED_STATE
        except AmqpError as exc:
            state = rejected(exc)
        link.settle_incoming(delivery, state)


class _ReceiverLinkHandler(LinkHandler):
    """A client's receiver: peek-lock or receive-and-delete, maybe bound to one session."""

    def __init__(self, entity: MessageEntity, link: Link) -> None:
        self.entity = entity
        self.link = link
        self.receive_and_delete = link.snd_settle_mode == 1
        self.session_id: str | None = None
        self.session: MessageSession | None = None

    def credit(self) -> int:
        return 0 if self.link.detached else self.link.credit

    def deliver(self, entity: MessageEntity, message: StoredMessage) -> None:
        faults = entity.broker.faults
        if self.receive_and_delete:
            message.attempts += 1
            entity.take(message)
            self.link.send(message.encode(), settled=True)
            return
        locked_until = self.session.locked_until_ms if self.session is not None else None
        token = entity.lock(message, locked_until)
        if faults is not None and faults.take_duplicate(entity.path):
            message.replay_twice = True
        malformed = faults is not None and faults.take_malformed(entity.path)
        self.link.send(
            message.encode(locked=True, lock_expiry=not malformed),
            tag=token.bytes_le,
            settled=False,
            context=token,
        )

    def detach(self, error: AmqpError) -> None:
        self.link.detach(error)

    def on_attached(self, link: Link) -> None:
        self.entity.consumers.append(self)

    def on_flow(self, link: Link) -> None:
        self.entity.pump()

    def on_disposition(
        self, link: Link, delivery: OutgoingDelivery, state: Any
    ) -> Described | None:
        token: uuid.UUID = delivery.context
        entity = self.entity
        code = state_code(state)
        try:
            if code == ACCEPTED:
                entity.complete(token)
            elif code == MODIFIED:
                fields = [*state.value, None, None, None]
                if fields[1]:
                    entity.defer(token)
                else:
                    entity.abandon(token)
            elif code == REJECTED:
                reason, description = _dead_letter_details(state)
                entity.dead_letter_locked(token, reason, description)
            elif code == RELEASED:
                entity.abandon(token, counts=False)
        except AmqpError as exc:
            return rejected(exc)
        return None

    def on_detached(self, link: Link) -> None:
        if self in self.entity.consumers:
            self.entity.consumers.remove(self)
        if self.session is not None and self.session.owner is self:
            self.entity.release_session(self.session)


def _bind_session(link: Link, receiver: _ReceiverLinkHandler, session: MessageSession) -> None:
    """Tie a receiver to its locked session and name the session in the attach reply."""
    receiver.session = session
    receiver.session_id = session.session_id
    fields = (list(link.source.value) + [None] * 11)[:11]
    fields[7] = {**(fields[7] or {}), SESSION_FILTER: session.session_id}
    link.source_reply = Described(ULong(SOURCE), fields)
    link.attach_properties = {SESSION_LOCKED_UNTIL: _ticks(session.locked_until_ms)}


def _dead_letter_details(state: Described) -> tuple[str | None, str | None]:
    error = state.value[0] if state.value else None
    if not isinstance(error, Described):
        return None, None
    fields = [*list(error.value), None, None, None]
    info = fields[2] or {}
    reason = info.get("DeadLetterReason")
    description = info.get("DeadLetterErrorDescription", fields[1])
    return (str(reason) if reason is not None else None,
            str(description) if description is not None else None)


class ServiceBusNode(Node):
    """One Service Bus namespace served over AMQP."""

    def __init__(self, namespace: NamespaceSpec, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.broker = Broker(namespace, self._call_soon, self.faults)
        self._management = ManagementNode(self._is_management_address, self._on_management)
        self._timer: asyncio.TimerHandle | None = None

    def _call_soon(self, callback: Any) -> None:
        loop = self._loop or asyncio.get_running_loop()
        loop.call_soon(callback)

    def start(self) -> None:
        """Start the timers (lock expiry, scheduling, TTL); call on the server's loop."""
        self._loop = asyncio.get_running_loop()
        self._schedule_tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule_tick(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        try:
            self.broker.tick()
        except Exception:
            log.exception("service bus timers failed")
        self._schedule_tick()

    # ---------------------------------------------------------------- links

    def _is_management_address(self, address: str) -> bool:
        lowered = address.lower()
        if not lowered.endswith(MANAGEMENT_SUFFIX):
            return False
        path = lowered[: -len(MANAGEMENT_SUFFIX)]
        return path in self.broker.entities or path in self.broker.topics

    def open_link(self, link: Link) -> LinkHandler | asyncio.Future[LinkHandler] | None:
        handler = self._management.open_link(link)
        if handler is not None:
            return handler
        path = link.address.lower()
        broker = self.broker
        if not link.is_sender:
            return _SenderLinkHandler(broker, path) if broker.accepts(path) else None
        entity = broker.entity(path)
        if entity is None:
            return None
        receiver = _ReceiverLinkHandler(entity, link)
        filters = link.source_filters
        if SESSION_FILTER in filters or entity.uses_sessions:
            if not entity.uses_sessions:
                raise AmqpError("amqp:not-allowed",
                                f"The entity '{path}' does not require sessions.")
            if SESSION_FILTER not in filters:
                raise AmqpError(
                    "amqp:not-allowed",
                    f"It is not possible for an entity that requires sessions ('{path}') "
                    "to create a non-sessionful message receiver.",
                )
            requested = filters.get(SESSION_FILTER)
            if requested is None and entity.next_available_session() is None:
                return self._wait_for_session(entity, receiver, link)
            session = entity.acquire_session(
                receiver, str(requested) if requested is not None else None
            )
            _bind_session(link, receiver, session)
        return receiver

    def _wait_for_session(self, entity: MessageEntity, receiver: _ReceiverLinkHandler,
                          link: Link) -> asyncio.Future[LinkHandler]:
        """Hold a next-available-session attach until a session has messages, as Azure
        does, or refuse it with com.microsoft:timeout after NEXT_SESSION_WAIT seconds."""
        loop = asyncio.get_running_loop()
        attached: asyncio.Future[LinkHandler] = loop.create_future()

        def bind(session: MessageSession) -> None:
            _bind_session(link, receiver, session)
            attached.set_result(receiver)

        def give_up() -> None:
            if not attached.done():
                attached.set_exception(AmqpError(
                    "com.microsoft:timeout",
                    f"No session of '{entity.path}' became available within "
                    f"{NEXT_SESSION_WAIT:.0f} s.",
                ))

        timer = loop.call_later(NEXT_SESSION_WAIT, give_up)
        attached.add_done_callback(lambda _: timer.cancel())
        entity.wait_for_session(receiver, bind, attached)
        return attached

    def connection_closed(self, connection: Connection) -> None:
        """Nothing to do: receivers release their sessions as their links detach."""

    # ---------------------------------------------------------------- management

    def _on_management(self, request: ManagementRequest) -> ManagementResponse:
        path = request.link.address.lower()[: -len(MANAGEMENT_SUFFIX)]
        operation = request.operation.removeprefix("com.microsoft:")
        body = request.body if isinstance(request.body, dict) else {}
        handler = getattr(self, "_op_" + operation.replace("-", "_"), None)
        if handler is None:
            return management_error(
                501, "com.microsoft:not-implemented",
                f"operation {request.operation} is not emulated",
            )
        try:
            response: ManagementResponse = handler(path, body)
        except AmqpError as exc:
            status = _STATUS_BY_CONDITION.get(exc.condition, 400)
            return management_error(status, exc.condition, exc.description or exc.condition)
        return response

    def _entity(self, path: str) -> MessageEntity:
        entity = self.broker.entity(path)
        if entity is None:
            raise AmqpError("amqp:not-found", f"The messaging entity '{path}' was not found.")
        return entity

    def _op_peek_message(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        from_sequence = int(body.get("from-sequence-number") or 0)
        count = int(body.get("message-count") or 1)
        session_id = body.get("session-id")
        if path in self.broker.topics:
            return ManagementResponse(status=204, description="No messages")
        entity = self._entity(path)
        found = entity.peek(from_sequence, count, session_id)
        scheduled = [
            m.encode(state=State.SCHEDULED)
            for m in self.broker.scheduled_messages(path)
            if m.sequence_number >= from_sequence
        ]
        found = (found + scheduled)[:count]
        if not found:
            return ManagementResponse(status=204, description="No messages")
        return ManagementResponse(body={"messages": [{"message": data} for data in found]})

    def _op_renew_lock(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        entity = self._entity(path)
        expirations = [Timestamp(entity.renew(_uuid(t))) for t in body.get("lock-tokens", [])]
        return ManagementResponse(body={"expirations": Array(0x83, expirations)})

    def _op_schedule_message(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        numbers = []
        for item in body.get("messages", []):
            message = StoredMessage.from_payload(item["message"])
            due = message.annotations.get(Symbol("x-opt-scheduled-enqueue-time"))
            if due is None:
                raise AmqpError("com.microsoft:argument-error", "no scheduled enqueue time")
            numbers.append(self.broker.schedule(path, message, int(due)))
        return ManagementResponse(body={"sequence-numbers": Array(0x81, numbers)})

    def _op_cancel_scheduled_message(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        for number in body.get("sequence-numbers", []):
            self.broker.cancel_scheduled(int(number))
        return ManagementResponse()

    def _op_update_disposition(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        entity = self._entity(path)
        status = str(body.get("disposition-status", ""))
        session_id = body.get("session-id")
        if entity.uses_sessions and session_id is not None:
            entity.session_for(str(session_id))  # session-lock-lost once the session is
        for raw in body.get("lock-tokens", []):
            token = _uuid(raw)
            if status == "completed":
                entity.complete(token)
            elif status == "abandoned":
                entity.abandon(token)
            elif status == "defered":
                entity.defer(token)
            elif status == "suspended":
                entity.dead_letter_locked(
                    token, _opt_str(body.get("deadletter-reason")),
                    _opt_str(body.get("deadletter-description")),
                )
            else:
                raise AmqpError("com.microsoft:argument-error", f"unknown disposition {status}")
        return ManagementResponse()

    def _op_receive_by_sequence_number(
        self, path: str, body: dict[Any, Any]
    ) -> ManagementResponse:
        entity = self._entity(path)
        delete = body.get("receiver-settle-mode") == 0
        out: list[dict[str, Any]] = []
        for number in body.get("sequence-numbers", []):
            message = entity.messages.get(int(number))
            if message is None or not message.deferred or message.lock_token is not None:
                raise AmqpError(
                    MESSAGE_NOT_FOUND, f"Failed to retrieve the deferred message {number}."
                )
            if delete:
                message.attempts += 1
                entity.take(message)
                out.append({"message": message.encode(state=State.DEFERRED)})
                continue
            locked_until = None
            if entity.uses_sessions:
                locked_until = entity.session_for(message.session_id or "").locked_until_ms
            token = entity.lock(message, locked_until)
            out.append({"message": message.encode(state=State.DEFERRED, locked=True),
                        "lock-token": token})
        return ManagementResponse(body={"messages": out})

    def _op_renew_session_lock(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        entity = self._entity(path)
        until = entity.renew_session(str(body.get("session-id")))
        return ManagementResponse(body={"expiration": Timestamp(until)})

    def _op_get_session_state(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        session = self._entity(path).session_for(str(body.get("session-id")))
        return ManagementResponse(body={"session-state": session.state})

    def _op_set_session_state(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        session = self._entity(path).session_for(str(body.get("session-id")))
        state = body.get("session-state")
        session.state = bytes(state) if state is not None else None
        session.updated_ms = now_ms()
        return ManagementResponse()

    def _op_get_message_sessions(self, path: str, body: dict[Any, Any]) -> ManagementResponse:
        entity = self._entity(path)
        skip = int(body.get("skip") or 0)
        top = int(body.get("top") or 100)
        updated_after = int(body.get("last-updated-time") or _LIST_ALL_SESSIONS)
        if updated_after >= _LIST_ALL_SESSIONS:
            listed = [s for s in entity.sessions.values() if s.available or s.state is not None]
        else:
            listed = [s for s in entity.sessions.values()
                      if s.state is not None and s.updated_ms > updated_after]
        ids = [s.session_id for s in listed][skip : skip + top]
        if not ids:
            return ManagementResponse(status=204, description="No sessions")
        return ManagementResponse(body={"skip": skip + len(ids), "sessions-ids": ids})


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes):
        return uuid.UUID(bytes=value)
    return uuid.UUID(str(value))


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
