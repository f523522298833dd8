"""The Service Bus broker: queues, topics, subscriptions, locks, sessions, dead-lettering.

All state lives on the server's event loop; nothing here blocks or awaits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from devstack.amqp.frames import AmqpError
from devstack.servicebus.entities import EntitySettings, NamespaceSpec, RuleSpec
from devstack.servicebus.filters import MessageFacts, Rule
from devstack.servicebus.store import (
    SCHEDULED_ENQUEUE_TIME,
    State,
    StoredMessage,
    now_ms,
    replace_sections,
)

if TYPE_CHECKING:
    from devstack.faults import Faults

log = logging.getLogger("devstack.servicebus")

DEAD_LETTER_SUFFIX = "/$deadletterqueue"
MAX_FORWARD_HOPS = 4
LOCK_LOST = "com.microsoft:message-lock-lost"
SESSION_LOCK_LOST = "com.microsoft:session-lock-lost"
SESSION_CANNOT_BE_LOCKED = "com.microsoft:session-cannot-be-locked"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"


class Consumer(Protocol):
    """A receiver link as the broker sees it."""

    session_id: str | None

    def credit(self) -> int: ...

    def deliver(self, entity: MessageEntity, message: StoredMessage) -> None: ...

    def detach(self, error: AmqpError) -> None: ...


class LockLost(AmqpError):
    def __init__(self, description: str = "The lock supplied is invalid. Either the lock "
                 "expired, or the message has already been removed from the queue.") -> None:
        super().__init__(LOCK_LOST, description)


class MessageSession:
    """A session inside a session-enabled queue or subscription."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.available: list[int] = []
        self.owner: Consumer | None = None
        self.locked_until_ms = 0
        self.state: bytes | None = None
        self.updated_ms = now_ms()

    @property
    def locked(self) -> bool:
        return self.owner is not None and self.locked_until_ms > now_ms()


class MessageEntity:
    """A queue, a subscription, or one of their dead-letter sub-queues."""

    def __init__(self, broker: Broker, path: str, settings: EntitySettings, *,
                 is_dead_letter: bool = False) -> None:
        self.broker = broker
        self.path = path
        """Lower-case address path, e.g. `q1`, `t1/subscriptions/s1`."""
        self.settings = settings
        self.is_dead_letter = is_dead_letter
        self.created_ms = self.updated_ms = now_ms()
        self.messages: dict[int, StoredMessage] = {}
        self.available: list[int] = []
        self.locks: dict[uuid.UUID, StoredMessage] = {}
        self.consumers: list[Consumer] = []
        self.sessions: dict[str, MessageSession] = {}
        self.session_waiters: deque[
            tuple[Consumer, Callable[[MessageSession], None], asyncio.Future[Any]]
        ] = deque()
        """Next-available-session receivers whose attach waits for a session."""
        self.arrivals: deque[int] = deque()
        """Sequence numbers in enqueue order of messages with the default TTL: they expire
        in this order, so no timer per message is needed."""
        self.dead_letter: MessageEntity | None = None
        if not is_dead_letter:
            dead_settings = EntitySettings(
                lock_duration=settings.lock_duration,
                max_delivery_count=settings.max_delivery_count,
                default_ttl=settings.default_ttl,
            )
            self.dead_letter = MessageEntity(
                broker, path + DEAD_LETTER_SUFFIX, dead_settings, is_dead_letter=True
            )
        self._pump_scheduled = False
        self._turn = 0

    @property
    def uses_sessions(self) -> bool:
        return self.settings.requires_session and not self.is_dead_letter

    # ---------------------------------------------------------------- enqueue

    def enqueue(self, message: StoredMessage, *, hops: int = 0) -> None:
        """Make `message` available here (or at its ForwardTo entity)."""
        if self.settings.forward_to and not self.is_dead_letter and hops < MAX_FORWARD_HOPS:
            self.broker.forward(self.settings.forward_to, message, hops + 1)
            return
        now = now_ms()
        if not (message.scheduled_ms and message.sequence_number):
            # a scheduled message keeps the sequence number it was given when scheduled
            message.sequence_number = self.broker.next_sequence()
        message.enqueued_ms = now
        ttl = self.settings.default_ttl * 1000
        if message.ttl_ms:
            ttl = min(ttl, message.ttl_ms)
        message.expires_ms = now + int(ttl)
        self.messages[message.sequence_number] = message
        if ttl < self.settings.default_ttl * 1000:
            self.broker.watch_expiry(self, message)
        else:
            self.arrivals.append(message.sequence_number)
        self._make_available(message)

    def _make_available(self, message: StoredMessage) -> None:
        if self.uses_sessions:
            session_id = message.session_id or ""
            session = self.sessions.get(session_id)
            if session is None:
                session = self.sessions[session_id] = MessageSession(session_id)
            heapq.heappush(session.available, message.sequence_number)
            if self.session_waiters and session.owner is None:
                self._serve_session_waiters()
        else:
            heapq.heappush(self.available, message.sequence_number)
        self.schedule_pump()

    # ---------------------------------------------------------------- delivery

    def schedule_pump(self) -> None:
        if not self._pump_scheduled and self.consumers:
            self._pump_scheduled = True
            self.broker.call_soon(self.pump)

    def pump(self) -> None:
        """Hand available messages to consumers with credit, round-robin."""
        self._pump_scheduled = False
        if self.uses_sessions:
            for consumer in list(self.consumers):
                session = self.sessions.get(consumer.session_id or "")
                if session is not None and session.owner is consumer:
                    self._drain_into(consumer, session.available)
            return
        consumers = self.consumers
        available = self.available
        while available and consumers:
            count = len(consumers)
            for offset in range(count):
                consumer = consumers[(self._turn + offset) % count]
                if consumer.credit() > 0:
                    self._turn = (self._turn + offset + 1) % count
                    break
            else:
                return
            message = self._pop_available(available)
            if message is not None:
                consumer.deliver(self, message)

    def _drain_into(self, consumer: Consumer, available: list[int]) -> None:
        while available and consumer.credit() > 0:
            message = self._pop_available(available)
            if message is not None:
                consumer.deliver(self, message)

    def _pop_available(self, available: list[int]) -> StoredMessage | None:
        sequence_number = heapq.heappop(available)
        message = self.messages.get(sequence_number)
        if message is None or message.lock_token is not None or message.deferred:
            return None
        if message.expires_ms <= now_ms():
            self.expire(message)
            return None
        return message

    def lock(self, message: StoredMessage, lock_until_ms: int | None = None) -> uuid.UUID:
        token = uuid.uuid4()
        message.lock_token = token
        message.attempts += 1
        message.locked_until_ms = lock_until_ms or now_ms() + int(
            self.settings.lock_duration * 1000
        )
        self.locks[token] = message
        if not self.uses_sessions:
            self.broker.watch_lock(self, token, message.locked_until_ms)
        return token

    def take(self, message: StoredMessage) -> None:
        """Remove a message for good (completed, received-and-deleted, expired)."""
        self.messages.pop(message.sequence_number, None)
        if message.lock_token is not None:
            self.locks.pop(message.lock_token, None)
            message.lock_token = None

    # ---------------------------------------------------------------- settlement

    def locked_message(self, token: uuid.UUID) -> StoredMessage:
        message = self.locks.get(token)
        if message is None or message.lock_token != token:
            raise LockLost()
        if self.uses_sessions:
            session = self.sessions.get(message.session_id or "")
            if session is None or not session.locked:
                raise AmqpError(SESSION_LOCK_LOST, "The session lock has expired.")
        elif message.locked_until_ms <= now_ms():
            self.unlock(message)
            raise LockLost()
        return message

    def complete(self, token: uuid.UUID) -> None:
        message = self.locked_message(token)
        self.take(message)
        if message.replay_twice:
            twin = message.copy()
            self.broker.call_soon(lambda: self.enqueue(twin))

    def abandon(self, token: uuid.UUID, *, counts: bool = True) -> None:
        message = self.locked_message(token)
        if not counts:
            message.attempts -= 1
        self.unlock(message)

    def defer(self, token: uuid.UUID) -> None:
        message = self.locked_message(token)
        self.locks.pop(token, None)
        message.lock_token = None
        message.deferred = True

    def dead_letter_locked(self, token: uuid.UUID, reason: str | None,
                           description: str | None) -> None:
        message = self.locked_message(token)
        self.dead_letter_message(message, reason, description)

    def unlock(self, message: StoredMessage) -> None:
        """Give a locked message back: available again, deferred again, or dead-lettered
        once it has used up MaxDeliveryCount."""
        if message.lock_token is not None:
            self.locks.pop(message.lock_token, None)
            message.lock_token = None
        if message.sequence_number not in self.messages:
            return
        if message.deferred:
            return
        if message.attempts >= self.settings.max_delivery_count and not self.is_dead_letter:
            self.dead_letter_message(
                message,
                "MaxDeliveryCountExceeded",
                f"Message could not be consumed after {self.settings.max_delivery_count} "
                "delivery attempts.",
            )
            return
        self._make_available(message)

    def dead_letter_message(self, message: StoredMessage, reason: str | None,
                            description: str | None) -> None:
        self.take(message)
        if self.dead_letter is None:
            return
        props = dict(message.user_properties())
        if reason is not None:
            props["DeadLetterReason"] = reason
        if description is not None:
            props["DeadLetterErrorDescription"] = description
        copy = message.copy()
        copy.bare = replace_sections(message.bare, application_properties=props)
        copy.dead_letter_source = self.path
        copy.attempts = message.attempts
        copy.enqueued_ms = message.enqueued_ms
        target = self.settings.forward_dead_lettered_to
        if target:
            self.broker.forward(target, copy, 1)
            return
        dead = self.dead_letter
        copy.sequence_number = message.sequence_number
        copy.expires_ms = 2**62
        dead.messages[copy.sequence_number] = copy
        dead._make_available(copy)

    def expire_due(self, now: int) -> None:
        """Expire default-TTL messages whose time has come, oldest first."""
        arrivals = self.arrivals
        messages = self.messages
        while arrivals:
            message = messages.get(arrivals[0])
            if message is None:
                arrivals.popleft()
                continue
            if message.expires_ms > now:
                return
            if message.lock_token is not None:
                return
            arrivals.popleft()
            self.expire(message)

    def expire(self, message: StoredMessage) -> None:
        if message.sequence_number not in self.messages or message.lock_token is not None:
            return
        if self.settings.dead_lettering_on_expiration and not self.is_dead_letter:
            self.dead_letter_message(
                message, "TTLExpiredException", "The message expired and was dead lettered."
            )
        else:
            self.take(message)

    def renew(self, token: uuid.UUID) -> int:
        message = self.locked_message(token)
        message.locked_until_ms = now_ms() + int(self.settings.lock_duration * 1000)
        self.broker.watch_lock(self, token, message.locked_until_ms)
        return message.locked_until_ms

    # ---------------------------------------------------------------- sessions

    def next_available_session(self) -> MessageSession | None:
        for candidate in self.sessions.values():
            if candidate.available and not candidate.locked:
                return candidate
        return None

    def wait_for_session(self, consumer: Consumer, bind: Callable[[MessageSession], None],
                         waiting: asyncio.Future[Any]) -> None:
        """Call `bind` with the next session that becomes available, locked for `consumer`,
        unless `waiting` is done (timed out or given up) by then."""
        self.session_waiters.append((consumer, bind, waiting))

    def _serve_session_waiters(self) -> None:
        waiters = self.session_waiters
        while waiters:
            consumer, bind, waiting = waiters[0]
            if waiting.done():
                waiters.popleft()
                continue
            session = self.next_available_session()
            if session is None:
                return
            waiters.popleft()
            bind(self.acquire_session(consumer, session.session_id))

    def acquire_session(self, consumer: Consumer, session_id: str | None) -> MessageSession:
        now = now_ms()
        if session_id is None:
            candidate = self.next_available_session()
            if candidate is None:
                raise AmqpError("com.microsoft:timeout",
                                "No unlocked session with messages is available.")
            session = candidate
        else:
            session = self.sessions.get(session_id) or MessageSession(session_id)
            self.sessions[session_id] = session
            if session.locked and session.owner is not consumer:
                raise AmqpError(
                    SESSION_CANNOT_BE_LOCKED,
                    f"The requested session '{session_id}' cannot be accepted. "
                    "It may be locked by another receiver.",
                )
        if session.owner is not None and session.owner is not consumer:
            self._release_session_messages(session)
        session.owner = consumer
        session.locked_until_ms = now + int(self.settings.lock_duration * 1000)
        self.broker.watch_session(self, session)
        return session

    def release_session(self, session: MessageSession) -> None:
        session.owner = None
        session.locked_until_ms = 0
        self._release_session_messages(session)
        if self.session_waiters:
            self._serve_session_waiters()
        if not session.available and session.state is None and not any(
            m.session_id == session.session_id for m in self.messages.values()
        ):
            self.sessions.pop(session.session_id, None)

    def _release_session_messages(self, session: MessageSession) -> None:
        for message in list(self.locks.values()):
            if message.session_id == session.session_id:
                self.unlock(message)

    def renew_session(self, session_id: str) -> int:
        session = self.sessions.get(session_id)
        if session is None or not session.locked:
            raise AmqpError(SESSION_LOCK_LOST, "The session lock has expired.")
        session.locked_until_ms = now_ms() + int(self.settings.lock_duration * 1000)
        self.broker.watch_session(self, session)
        return session.locked_until_ms

    def session_for(self, session_id: str) -> MessageSession:
        session = self.sessions.get(session_id)
        if session is None or not session.locked:
            raise AmqpError(SESSION_LOCK_LOST, "The session lock has expired.")
        return session

    # ---------------------------------------------------------------- persistence

    def restore(self, message: StoredMessage) -> None:
        """Put back a message saved by an earlier run, with its sequence number."""
        self.messages[message.sequence_number] = message
        self.broker.watch_expiry(self, message)
        if not message.deferred:
            self._make_available(message)

    def restore_session_state(self, session_id: str, state: bytes) -> None:
        session = self.sessions.setdefault(session_id, MessageSession(session_id))
        session.state = state

    # ---------------------------------------------------------------- inspection

    def peek(self, from_sequence: int, count: int, session_id: str | None) -> list[bytes]:
        out = []
        for sequence_number in sorted(self.messages):
            if sequence_number < from_sequence:
                continue
            message = self.messages[sequence_number]
            if session_id is not None and message.session_id != session_id:
                continue
            state = State.DEFERRED if message.deferred else State.ACTIVE
            out.append(message.encode(state=state))
            if len(out) >= count:
                break
        return out

    def __len__(self) -> int:
        return len(self.messages)


class Topic:
    def __init__(self, broker: Broker, path: str, default_ttl: float,
                 requires_duplicate_detection: bool, duplicate_window: float) -> None:
        self.broker = broker
        self.path = path
        self.default_ttl = default_ttl
        self.requires_duplicate_detection = requires_duplicate_detection
        self.duplicate_window = duplicate_window
        self.created_ms = self.updated_ms = now_ms()
        self.subscriptions: dict[str, tuple[MessageEntity, list[Rule]]] = {}

    def publish(self, message: StoredMessage, hops: int) -> None:
        facts = MessageFacts(message)
        for entity, rules in self.subscriptions.values():
            matched = [rule for rule in rules if rule.matches(facts)]
            if not matched:
                continue
            copy = message.copy()
            for rule in matched:
                rule.apply(copy)
            entity.enqueue(copy, hops=hops)


class DuplicateWindow:
    """MessageIds seen within the entity's duplicate-detection window."""

    def __init__(self, window_seconds: float) -> None:
        self.window_ms = int(window_seconds * 1000)
        self._seen: OrderedDict[Any, int] = OrderedDict()

    def seen(self, message_id: Any) -> bool:
        """Record `message_id`; True if it was already seen within the window."""
        now = now_ms()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > now - self.window_ms:
                break
            del self._seen[oldest]
        key = message_id if not isinstance(message_id, list) else tuple(message_id)
        if key in self._seen:
            return True
        self._seen[key] = now
        return False


class Broker:
    """Every entity of one Service Bus namespace, plus the timers that drive them."""

    def __init__(self, namespace: NamespaceSpec, call_soon: Callable[[Callable[[], None]], None],
                 faults: Faults | None = None) -> None:
        self.namespace = namespace
        self._call_soon = call_soon
        self.faults = faults
        self.entities: dict[str, MessageEntity] = {}
        self.topics: dict[str, Topic] = {}
        self.duplicates: dict[str, DuplicateWindow] = {}
        self.last_sequence = 0
        self._locks: list[tuple[int, int, MessageEntity, uuid.UUID]] = []
        self._expiries: list[tuple[int, int, MessageEntity, int]] = []
        self._scheduled: list[tuple[int, int, str, StoredMessage]] = []
        self._scheduled_index: dict[int, str] = {}
        self._cancelled: set[int] = set()
        self._sessions: list[tuple[int, int, MessageEntity, MessageSession]] = []
        self._tie = itertools.count()
        for queue in namespace.queues:
            self.add_queue(queue.name, queue.settings)
        for topic in namespace.topics:
            self.add_topic(topic.name, topic.default_ttl, topic.requires_duplicate_detection,
                           topic.duplicate_window)
            for subscription in topic.subscriptions:
                self.add_subscription(topic.name, subscription.name, subscription.settings,
                                      subscription.rules)

    # ---------------------------------------------------------------- topology

    def add_queue(self, name: str, settings: EntitySettings) -> MessageEntity:
        path = name.lower()
        entity = MessageEntity(self, path, settings)
        self.entities[path] = entity
        assert entity.dead_letter is not None
        self.entities[entity.dead_letter.path] = entity.dead_letter
        if settings.requires_duplicate_detection:
            self.duplicates[path] = DuplicateWindow(settings.duplicate_window)
        return entity

    def add_topic(self, name: str, default_ttl: float, requires_duplicate_detection: bool,
                  duplicate_window: float) -> Topic:
        path = name.lower()
        topic = Topic(self, path, default_ttl, requires_duplicate_detection, duplicate_window)
        self.topics[path] = topic
        if requires_duplicate_detection:
            self.duplicates[path] = DuplicateWindow(duplicate_window)
        return topic

    def add_subscription(self, topic_name: str, name: str, settings: EntitySettings,
                         rules: tuple[RuleSpec, ...] | list[RuleSpec]) -> MessageEntity:
        topic = self.topics[topic_name.lower()]
        path = f"{topic.path}/subscriptions/{name.lower()}"
        entity = MessageEntity(self, path, settings)
        self.entities[path] = entity
        assert entity.dead_letter is not None
        self.entities[entity.dead_letter.path] = entity.dead_letter
        compiled = [Rule.from_spec(rule) for rule in rules] or [Rule.true_rule()]
        topic.subscriptions[name.lower()] = (entity, compiled)
        return entity

    def remove_entity(self, path: str) -> None:
        """Delete a queue, a topic (with its subscriptions) or a subscription; receivers
        attached to it are detached with amqp:not-found, as when Azure deletes an entity."""
        path = path.lower()
        topic = self.topics.pop(path, None)
        if topic is not None:
            self.duplicates.pop(path, None)
            for name in list(topic.subscriptions):
                self.remove_entity(f"{path}/subscriptions/{name}")
            return
        entity = self.entities.pop(path, None)
        if entity is None:
            return
        self.duplicates.pop(path, None)
        topic_path, _, name = path.partition("/subscriptions/")
        if name and topic_path in self.topics:
            self.topics[topic_path].subscriptions.pop(name, None)
        gone = AmqpError("amqp:not-found", f"The messaging entity '{path}' was deleted.")
        for dropped in (entity, entity.dead_letter):
            if dropped is None:
                continue
            self.entities.pop(dropped.path, None)
            for consumer in list(dropped.consumers):
                consumer.detach(gone)
        self._scheduled_index = {number: where for number, where in
                                 self._scheduled_index.items() if where != path}

    def update_settings(self, path: str, settings: EntitySettings) -> None:
        """New settings for a queue or subscription (RequiresSession cannot change)."""
        entity = self.entities[path.lower()]
        entity.settings = settings
        entity.updated_ms = now_ms()
        if entity.dead_letter is not None:
            entity.dead_letter.settings = EntitySettings(
                lock_duration=settings.lock_duration,
                max_delivery_count=settings.max_delivery_count,
                default_ttl=settings.default_ttl,
            )
        if settings.requires_duplicate_detection:
            self.duplicates[entity.path] = DuplicateWindow(settings.duplicate_window)

    def entity(self, path: str) -> MessageEntity | None:
        return self.entities.get(path.lower())

    def iter_entities(self) -> Iterator[MessageEntity]:
        return iter(self.entities.values())

    # ---------------------------------------------------------------- send

    def next_sequence(self) -> int:
        self.last_sequence += 1
        return self.last_sequence

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._call_soon(callback)

    def accepts(self, path: str) -> bool:
        path = path.lower()
        return path in self.topics or (path in self.entities and "/" not in path)

    def send(self, path: str, message: StoredMessage) -> int | None:
        """Accept one message sent to a queue or topic. Returns its sequence number when it
        was scheduled, else None."""
        path = path.lower()
        if self.faults is not None:
            self.faults.before_send(path)
            if self.faults.take_duplicate_send(path):
                self.send(path, message.copy())
        if path in self.duplicates:
            message_id = message.message_id
            if message_id is not None and self.duplicates[path].seen(message_id):
                return None
        scheduled = message.annotations.get(SCHEDULED_ENQUEUE_TIME)
        if scheduled is not None and int(scheduled) > now_ms():
            return self.schedule(path, message, int(scheduled))
        self._deliver_to(path, message, 0)
        return None

    def _deliver_to(self, path: str, message: StoredMessage, hops: int) -> None:
        topic = self.topics.get(path)
        if topic is not None:
            topic.publish(message, hops)
            return
        entity = self.entities.get(path)
        if entity is None:
            raise AmqpError("amqp:not-found", f"The messaging entity '{path}' could not be found.")
        if entity.uses_sessions and message.session_id is None:
            raise AmqpError(
                "amqp:not-allowed",
                f"The SessionId was not set on a message, and it cannot be sent to the "
                f"entity '{path}'. Entities that have session support enabled can only "
                "receive messages that have the SessionId set.",
            )
        entity.enqueue(message, hops=hops)

    def forward(self, path: str, message: StoredMessage, hops: int) -> None:
        try:
            self._deliver_to(path.lower(), message, hops)
        except AmqpError as exc:
            log.warning("cannot forward to %s: %s", path, exc)

    def schedule(self, path: str, message: StoredMessage, due_ms: int) -> int:
        sequence_number = self.next_sequence()
        message.sequence_number = sequence_number
        message.scheduled_ms = due_ms
        heapq.heappush(self._scheduled, (due_ms, sequence_number, path, message))
        self._scheduled_index[sequence_number] = path
        return sequence_number

    def cancel_scheduled(self, sequence_number: int) -> None:
        if sequence_number in self._scheduled_index:
            self._cancelled.add(sequence_number)
            del self._scheduled_index[sequence_number]

    def scheduled_entries(self) -> list[tuple[int, int, str, StoredMessage]]:
        return [entry for entry in self._scheduled if entry[1] in self._scheduled_index]

    def restore_scheduled(self, path: str, message: StoredMessage, due_ms: int) -> None:
        heapq.heappush(self._scheduled, (due_ms, message.sequence_number, path, message))
        self._scheduled_index[message.sequence_number] = path

    def scheduled_messages(self, path: str) -> list[StoredMessage]:
        return [m for _, seq, p, m in self._scheduled
                if p == path and seq in self._scheduled_index]

    # ---------------------------------------------------------------- timers

    def watch_lock(self, entity: MessageEntity, token: uuid.UUID, until_ms: int) -> None:
        heapq.heappush(self._locks, (until_ms, next(self._tie), entity, token))

    def watch_expiry(self, entity: MessageEntity, message: StoredMessage) -> None:
        heapq.heappush(
            self._expiries, (message.expires_ms, next(self._tie), entity, message.sequence_number)
        )

    def watch_session(self, entity: MessageEntity, session: MessageSession) -> None:
        heapq.heappush(self._sessions, (session.locked_until_ms, next(self._tie), entity, session))

    def tick(self) -> None:
        """Fire due timers: lock expiry, scheduled enqueue, TTL expiry, session locks."""
        now = now_ms()
        locks = self._locks
        while locks and locks[0][0] <= now:
            _, _, entity, token = heapq.heappop(locks)
            message = entity.locks.get(token)
            if message is not None and message.locked_until_ms <= now:
                entity.unlock(message)
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= now:
            _, sequence_number, path, message = heapq.heappop(scheduled)
            if sequence_number in self._cancelled:
                self._cancelled.discard(sequence_number)
                continue
            self._scheduled_index.pop(sequence_number, None)
            self.forward(path, message, 0)
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, _, entity, sequence_number = heapq.heappop(expiries)
            message = entity.messages.get(sequence_number)
            if message is not None and message.expires_ms <= now:
                if message.lock_token is None:
                    entity.expire(message)
                else:
                    heapq.heappush(expiries, (message.locked_until_ms + 1, next(self._tie),
                                              entity, sequence_number))
        for entity in self.entities.values():
            if entity.arrivals:
                entity.expire_due(now)
        sessions = self._sessions
        while sessions and sessions[0][0] <= now:
            _, _, entity, session = heapq.heappop(sessions)
            if session.locked_until_ms <= now:
                self._lose_session(entity, session)

    def expire_locks(self, path: str | None = None) -> int:
        """Expire every current message lock now (fault injection); returns how many
        messages were locked. On a session entity the session locks expire instead, as
        its messages have none of their own: the receivers lose their sessions."""
        count = 0
        for entity in list(self.entities.values()):
            if path is not None and entity.path != path.lower():
                continue
            count += len(entity.locks)
            if entity.uses_sessions:
                for session in list(entity.sessions.values()):
                    self._lose_session(entity, session)
                continue
            for message in list(entity.locks.values()):
                message.locked_until_ms = 0
                entity.unlock(message)
        return count

    def _lose_session(self, entity: MessageEntity, session: MessageSession) -> None:
        owner = session.owner
        if owner is None:
            return
        entity.release_session(session)
        owner.detach(AmqpError(SESSION_LOCK_LOST, "The session lock has expired."))

    def fingerprint(self) -> tuple[int, int]:
        """Changes whenever a message arrives or leaves: (last sequence number, count)."""
        return self.last_sequence, self.pending_messages()

    def pending_messages(self) -> int:
        return sum(len(entity) for entity in self.entities.values())

