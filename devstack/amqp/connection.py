"""The server side of one AMQP 1.0 connection: SASL, open/begin/attach, flow, transfers.

One asyncio Protocol per TCP connection; no task per message. Outgoing frames are
collected and written once per event-loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.amqp.codec import (
    Array,
    DecodeError,
    Described,
    UByte,
    UInt,
    ULong,
    UShort,
)
from devstack.amqp.frames import (
    ATTACH,
    BEGIN,
    CLOSE,
    DETACH,
    DISPOSITION,
    END,
    FLOW,
    FRAME_SASL,
    OPEN,
    REJECTED,
    SASL_INIT,
    SASL_MECHANISMS,
    SASL_OUTCOME,
    TRANSFER,
    AmqpError,
    decode_performative,
    frame,
    performative,
    rejected,
    state_code,
)

if TYPE_CHECKING:
    from devstack.amqp.node import LinkHandler, Node

log = logging.getLogger("devstack.amqp")

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
MAX_FRAME_SIZE = 1024 * 1024
MAX_MESSAGE_SIZE = 1024 * 1024
"""Largest message accepted, as Azure Service Bus Premium and Event Hubs allow."""
WINDOW = 2**31 - 1
INCOMING_CREDIT = 5000
"""Link credit granted to each client sender; topped up when half is used."""

_FRAME_HEADER = struct.Struct(">IBBH")


class IncomingDelivery:
    """A message a client sent on a link the server receives on."""

    __slots__ = ("delivery_id", "link", "message_format", "payload", "settled", "tag")

    def __init__(
        self, link: Link, delivery_id: int, tag: bytes, message_format: int, settled: bool,
        payload: bytes,
    ) -> None:
        self.link = link
        self.delivery_id = delivery_id
        self.tag = tag
        self.message_format = message_format
        self.settled = settled
        self.payload = payload


class OutgoingDelivery:
    """A message the server sent; `context` is the node's own record (e.g. a lock)."""

    __slots__ = ("context", "delivery_id", "link", "settled", "tag")

    def __init__(
        self, link: Link, delivery_id: int, tag: bytes, settled: bool, context: Any
    ) -> None:
        self.link = link
        self.delivery_id = delivery_id
        self.tag = tag
        self.settled = settled
        self.context = context


def _address(terminus: Any) -> str | None:
    if isinstance(terminus, Described) and isinstance(terminus.value, list) and terminus.value:
        address = terminus.value[0]
        if isinstance(address, bytes):
            return address.decode("utf-8")
        return str(address) if address is not None else None
    return None


def entity_path(address: str) -> str:
    """An address without its `amqp(s)://host[:port]/` prefix, if it has one."""
    scheme = address.find("://")
    if scheme < 0:
        return address
    slash = address.find("/", scheme + 3)
    return address[slash + 1 :] if slash >= 0 else ""


class Link:
    """One attached link. `is_sender` is True when the SERVER sends (client receives)."""

    def __init__(self, session: Session, fields: list[Any]) -> None:
        self.session = session
        self.name: str = fields[0]
        self.handle: int = fields[1]
        self.is_sender: bool = bool(fields[2])  # the client's role: True = receiver
        self.snd_settle_mode: int | None = fields[3]
        self.rcv_settle_mode: int | None = fields[4]
        self.source: Any = fields[5]
        self.target: Any = fields[6]
        self.properties: dict[Any, Any] = fields[13] or {}
        capabilities = fields[12]
        self.desired_capabilities: list[Any] = (
            capabilities if isinstance(capabilities, list)
            else [capabilities] if capabilities is not None else []
        )
        """The client's desired capabilities (Symbols), e.g. a receiver runtime metric."""
        self.remote_max_message_size: int | None = fields[10]
        self.source_address = _address(self.source)
        self.target_address = _address(self.target)
        self.raw_address: str = (
            self.source_address if self.is_sender else self.target_address
        ) or ""
        self.address = entity_path(self.raw_address)
        """The address without scheme and host: `amqps://h/q1/$management` -> `q1/$management`."""
        self.source_reply: Any = self.source
        """What the attach reply carries as source; a node may replace it (session filter)."""
        self.attach_properties: dict[Any, Any] | None = None
        """Properties sent in the attach reply (e.g. a session's locked-until)."""
        self.handler: LinkHandler | None = None
        self.pending_attach: asyncio.Future[LinkHandler] | None = None
        """Set while a node holds the attach reply (cancelled if the client gives up)."""
        self.detached = False
        # outgoing link state (server sends)
        self.credit = 0
        self.delivery_count = 0
        self.drain = False
        self._tag_counter = 0
        # incoming link state (server receives)
        self.granted = 0
        self._partial: bytearray | None = None
        self._partial_head: list[Any] | None = None

    @property
    def source_filters(self) -> dict[Any, Any]:
        if isinstance(self.source, Described) and len(self.source.value) > 7:
            return self.source.value[7] or {}
        return {}

    @property
    def connection(self) -> Connection:
        return self.session.connection

    def send(
        self,
        payload: bytes,
        *,
        tag: bytes | None = None,
        settled: bool = False,
        message_format: int = 0,
        context: Any = None,
    ) -> OutgoingDelivery:
        """Send one message; uses one credit. The caller checks `credit` first."""
        session = self.session
        delivery_id = session.next_outgoing_id
        session.next_outgoing_id = (delivery_id + 1) & 0xFFFFFFFF
        if tag is None:
            self._tag_counter += 1
            tag = self._tag_counter.to_bytes(8, "big")
        self.credit -= 1
        self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF
        delivery = OutgoingDelivery(self, delivery_id, tag, settled, context)
        if not settled:
            session.unsettled[delivery_id] = delivery
        self.connection.send_transfer(
            session.channel, self.handle, delivery_id, tag, message_format, settled, payload
        )
        return delivery

    def settle_incoming(self, delivery: IncomingDelivery, state: Described) -> None:
        """Settle a client's delivery the node answered later than its transfer callback."""
        if not delivery.settled:
            self.session.send_disposition(True, delivery.delivery_id, state)

    def flow(self, *, echo_drain: bool = False) -> None:
        """Send this link's flow state (credit for incoming links, count for outgoing)."""
        session = self.session
        credit = self.credit if self.is_sender else self.granted
        fields = [
            UInt(session.next_incoming_id),
            UInt(WINDOW),
            UInt(session.next_outgoing_id),
            UInt(WINDOW),
            UInt(self.handle),
            UInt(self.delivery_count),
            UInt(max(credit, 0)),
            UInt(0),
            self.drain if echo_drain else False,
            False,
            None,
        ]
        self.connection.send_frame(session.channel, performative(FLOW, fields))

    def finish_drain(self) -> None:
        """After sending what it can on a draining link, a node calls this to use up the
        remaining credit and tell the client."""
        if self.drain and self.credit > 0:
            self.delivery_count = (self.delivery_count + self.credit) & 0xFFFFFFFF
            self.credit = 0
            self.flow(echo_drain=True)
            self.drain = False

    def detach(self, error: AmqpError | None = None) -> None:
        """Close this link from the server side."""
        if self.detached:
            return
        self.session.close_link(self, error, notify=True)


class Session:
    def __init__(self, connection: Connection, channel: int, next_incoming_id: int) -> None:
        self.connection = connection
        self.channel = channel
        self.next_incoming_id = next_incoming_id
        self.next_outgoing_id = 0
        self.links: dict[int, Link] = {}
        self.unsettled: dict[int, OutgoingDelivery] = {}

    def links_at(self, address: str, *, sending: bool) -> list[Link]:
        return [
            link
            for link in self.links.values()
            if link.address == address and link.is_sender == sending and not link.detached
        ]

    def send_disposition(
        self, role_receiver: bool, first: int, state: Any, last: int | None = None
    ) -> None:
        fields = [role_receiver, UInt(first), UInt(last) if last is not None else None, True,
                  state, False]
        self.connection.send_frame(self.channel, performative(DISPOSITION, fields))

    def on_attach(self, fields: list[Any]) -> None:
        link = Link(self, fields)
        self.links[link.handle] = link
        handler: LinkHandler | None = None
        error: AmqpError | None = None
        try:
            routed = self.connection.route(link)
        except AmqpError as exc:
            error = exc
        except Exception:
            log.exception("node failed to attach %s", link.address)
            error = AmqpError("amqp:internal-error", f"cannot attach to {link.address}")
        else:
            if isinstance(routed, asyncio.Future):
                # the node answers later (e.g. a next-available session): hold the reply
                link.pending_attach = routed
                routed.add_done_callback(lambda done: self._finish_pending_attach(link, done))
                return
            handler = routed
        self._complete_attach(link, handler, error)

    def _finish_pending_attach(self, link: Link, done: asyncio.Future[LinkHandler]) -> None:
        link.pending_attach = None
        if link.detached or done.cancelled() or self.connection.closed:
            return
        error = done.exception()
        if error is not None and not isinstance(error, AmqpError):
            log.error("node failed to attach %s: %r", link.address, error)
            error = AmqpError("amqp:internal-error", f"cannot attach to {link.address}")
        handler = done.result() if error is None else None
        self._complete_attach(link, handler, error if isinstance(error, AmqpError) else None)

    def _complete_attach(
        self, link: Link, handler: LinkHandler | None, error: AmqpError | None
    ) -> None:
        if handler is None and error is None:
            error = AmqpError(
                "amqp:not-found", f"The messaging entity '{link.address}' could not be found."
            )
        link.handler = handler
        self.connection.send_frame(
            self.channel, self._attach_reply(link, failed=error is not None)
        )
        if error is not None:
            self.close_link(link, error, notify=False)
            return
        if link.is_sender:
            link.delivery_count = 0
        else:
            link.granted = INCOMING_CREDIT
            link.flow()
        assert handler is not None
        handler.on_attached(link)

    def _attach_reply(self, link: Link, *, failed: bool) -> bytes:
        # a refused attach carries a null terminus on the server's side, then a detach
        if failed:
            source, target = (None, link.target) if link.is_sender else (link.source, None)
        else:
            source, target = link.source_reply, link.target
        fields = [
            link.name,
            UInt(link.handle),
            not link.is_sender,
            link.snd_settle_mode if link.snd_settle_mode is None else _ubyte(link.snd_settle_mode),
            link.rcv_settle_mode if link.rcv_settle_mode is None else _ubyte(link.rcv_settle_mode),
            source,
            target,
            None,
            None,
            UInt(0) if link.is_sender else None,
            ULong(MAX_MESSAGE_SIZE),
            None,
            None,
            link.attach_properties,
        ]
        return performative(ATTACH, fields)

    def _forget(self, link: Link) -> None:
        """Drop a detached link and its unsettled deliveries (they can never be settled)."""
        link.detached = True
        self.links.pop(link.handle, None)
        if self.unsettled:
            for delivery_id in [i for i, d in self.unsettled.items() if d.link is link]:
                del self.unsettled[delivery_id]

    def close_link(self, link: Link, error: AmqpError | None, *, notify: bool) -> None:
        self._forget(link)
        self.connection.send_frame(
            self.channel,
            performative(DETACH, [UInt(link.handle), True, error.described() if error else None]),
        )
        if notify and link.handler is not None:
            self.connection.notify_detached(link)

    def on_remote_detach(self, fields: list[Any]) -> None:
        link = self.links.get(fields[0])
        if link is None or link.detached:
            return
        if link.pending_attach is not None:
            link.pending_attach.cancel()
        self._forget(link)
        self.connection.send_frame(
            self.channel, performative(DETACH, [UInt(link.handle), True, None])
        )
        self.connection.notify_detached(link)

    def on_flow(self, fields: list[Any]) -> None:
        handle = fields[4]
        if handle is None:
            return
        link = self.links.get(handle)
        if link is None:
            return
        if link.is_sender:
            remote_count = fields[5] if fields[5] is not None else link.delivery_count
            link.credit = remote_count + (fields[6] or 0) - link.delivery_count
            link.drain = bool(fields[8])
            if link.handler is not None:
                self.connection.safely(link.handler.on_flow, link)
                link.finish_drain()
            if fields[9]:
                link.flow()
        elif fields[9]:
            link.flow()

    def on_transfer(self, fields: list[Any], body: bytes, payload_at: int) -> None:
        link = self.links.get(fields[0])
        self.next_incoming_id = (self.next_incoming_id + 1) & 0xFFFFFFFF
        if link is None or link.is_sender:
            return
        more = bool(fields[5])
        if link._partial is not None:
            link._partial += body[payload_at:]
            if more:
                return
            head = link._partial_head
            assert head is not None
            payload = bytes(link._partial)
            link._partial = None
            link._partial_head = None
            fields = head
        elif more:
            link._partial = bytearray(body[payload_at:])
            link._partial_head = fields
            return
        else:
            payload = body[payload_at:]
        if fields[9]:  # aborted
            return
        link.granted -= 1
        if link.granted < INCOMING_CREDIT // 2:
            self.connection.credit_due.add(link)
        delivery = IncomingDelivery(
            link, fields[1] or 0, fields[2] or b"", fields[3] or 0, bool(fields[4]), payload
        )
        handler = link.handler
        if handler is None:
            return
        try:
            state = handler.on_transfer(link, delivery)
        except AmqpError as exc:
            state = rejected(exc)
        except Exception:
            log.exception("node failed on a transfer to %s", link.address)
            state = rejected(AmqpError("amqp:internal-error", "the server failed on this message"))
        if state is not None and not delivery.settled:
            self.connection.queue_disposition(self, delivery.delivery_id, state)

    def on_disposition(self, fields: list[Any]) -> None:
        if not fields[0]:  # only the client's receiver role settles our deliveries
            return
        first = fields[1]
        last = fields[2] if fields[2] is not None else first
        settled = bool(fields[3])
        state = fields[4]
        for delivery_id in range(first, last + 1):
            delivery = self.unsettled.pop(delivery_id, None)
            if delivery is None:
                continue
            handler = delivery.link.handler
            reply = state
            if handler is not None:
                try:
                    reply = handler.on_disposition(delivery.link, delivery, state)
                except Exception:
                    log.exception("node failed on a disposition")
            if not settled:
                if reply is None or reply is state:
                    # an echo of the client's own outcome: a dead-letter's `rejected` must
                    # come back without the client's error, or the SDK reads it as a failure
                    reply = rejected(None) if state_code(state) == REJECTED else state
                self.send_disposition(False, delivery_id, reply)

    def end(self, error: AmqpError | None = None) -> None:
        for link in list(self.links.values()):
            link.detached = True
            if link.pending_attach is not None:
                link.pending_attach.cancel()
            self.connection.notify_detached(link)
        self.links.clear()
        self.connection.send_frame(
            self.channel, performative(END, [error.described() if error else None])
        )


def _ubyte(value: int) -> UByte:
    return UByte(value)


class Connection(asyncio.Protocol):
    """One client connection; `router` picks the node handler for each new link."""

    def __init__(
        self,
        router: Callable[[Link], LinkHandler | asyncio.Future[LinkHandler] | None],
        nodes: list[Node],
    ) -> None:
        self._router = router
        self._nodes = nodes
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._stage = "header"
        self._sasl_done = False
        self.sessions: dict[int, Session] = {}
        self.remote_max_frame = 512
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._dispositions: dict[Session, list[tuple[int, Any]]] = {}
        self.credit_due: set[Link] = set()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._heartbeat_interval = 0.0
        self.closed = False
        self.write_delay = 0.0
        """Seconds to hold every outgoing write (fault injection: latency)."""

    # ---------------------------------------------------------------- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._detach_all()
        for node in self._nodes:
            self.safely(node.connection_closed, self)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        try:
            while not self.closed:
                if self._stage == "header":
                    if len(buffer) - pos < 8:
                        break
                    self._on_protocol_header(bytes(buffer[pos : pos + 8]))
                    pos += 8
                    continue
                if len(buffer) - pos < 8:
                    break
                size, doff, frame_type, channel = _FRAME_HEADER.unpack_from(buffer, pos)
                if len(buffer) - pos < size:
                    break
                body = bytes(buffer[pos + doff * 4 : pos + size])
                pos += size
                if body:
                    if frame_type == FRAME_SASL:
                        self._on_sasl_frame(body)
                    else:
                        self._on_frame(channel, body)
        except (DecodeError, AmqpError) as exc:
            log.warning("closing connection on a bad frame: %s", exc)
            error = exc if isinstance(exc, AmqpError) else AmqpError("amqp:decode-error", str(exc))
            self.send_frame(0, performative(CLOSE, [error.described()]))
            self._flush()
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        del buffer[:pos]
        self._after_input()

    # ---------------------------------------------------------------- output

    def send_frame(self, channel: int, body: bytes, frame_type: int = 0) -> None:
        self._out.append(frame(channel, body, frame_type))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            if self.write_delay > 0:
                loop.call_later(self.write_delay, self._flush)
            else:
                loop.call_soon(self._flush)

    def send_transfer(
        self, channel: int, handle: int, delivery_id: int, tag: bytes, message_format: int,
        settled: bool, payload: bytes,
    ) -> None:
        head = [UInt(handle), UInt(delivery_id), tag, UInt(message_format), settled, False,
                None, None, None, None, None]
        body = performative(TRANSFER, head)
        room = self.remote_max_frame - 8 - len(body) - 16
        if len(payload) <= room:
            self.send_frame(channel, body + payload)
            return
        for start in range(0, len(payload), room):
            chunk = payload[start : start + room]
            more = start + room < len(payload)
            first = start == 0
            fields = [UInt(handle), UInt(delivery_id) if first else None, tag if first else None,
                      UInt(message_format) if first else None, settled, more,
                      None, None, None, None, None]
            self.send_frame(channel, performative(TRANSFER, fields) + chunk)

    def queue_disposition(self, session: Session, delivery_id: int, state: Any) -> None:
        """Answer a client's delivery; consecutive equal answers go in one frame."""
        self._dispositions.setdefault(session, []).append((delivery_id, state))

    def _after_input(self) -> None:
        if self._dispositions:
            pending = self._dispositions
            self._dispositions = {}
            for session, answers in pending.items():
                first, state = answers[0]
                last = first
                for delivery_id, next_state in answers[1:]:
                    if delivery_id == last + 1 and next_state is state:
                        last = delivery_id
                        continue
                    session.send_disposition(True, first, state, last if last != first else None)
                    first, last, state = delivery_id, delivery_id, next_state
                session.send_disposition(True, first, state, last if last != first else None)
        if self.credit_due:
            for link in self.credit_due:
                if not link.detached:
                    link.granted = INCOMING_CREDIT
                    link.flow()
            self.credit_due.clear()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out))
        self._out.clear()

    # ---------------------------------------------------------------- protocol

    def _on_protocol_header(self, header: bytes) -> None:
        assert self.transport is not None
        if header == SASL_HEADER and not self._sasl_done:
            self.transport.write(SASL_HEADER)
            mechanisms = Array(0xA3, ["ANONYMOUS", "PLAIN", "MSSBCBS", "EXTERNAL"])
            self.send_frame(0, performative(SASL_MECHANISMS, [mechanisms]), FRAME_SASL)
            self._stage = "sasl"
        elif header == AMQP_HEADER:
            self.transport.write(AMQP_HEADER)
            self._stage = "open"
        else:
            self.transport.write(AMQP_HEADER)
            self.closed = True
            self.transport.close()

    def _on_sasl_frame(self, body: bytes) -> None:
        code, _fields, _ = decode_performative(body)
        if code == SASL_INIT:
            # any identity is accepted: devstack is a local emulator without auth
            self.send_frame(0, performative(SASL_OUTCOME, [_ubyte(0), None]), FRAME_SASL)
            self._sasl_done = True
            self._stage = "header"

    def _on_frame(self, channel: int, body: bytes) -> None:
        code, fields, payload_at = decode_performative(body)
        if code == TRANSFER:
            session = self.sessions.get(channel)
            if session is not None:
                session.on_transfer(fields, body, payload_at)
            return
        if code == DISPOSITION:
            session = self.sessions.get(channel)
            if session is not None:
                session.on_disposition(fields)
            return
        if code == FLOW:
            session = self.sessions.get(channel)
            if session is not None:
                session.on_flow(fields)
            return
        if code == OPEN:
            self._on_open(fields)
        elif code == BEGIN:
            self._on_begin(channel, fields)
        elif code == ATTACH:
            session = self.sessions.get(channel)
            if session is not None:
                session.on_attach(fields)
        elif code == DETACH:
            session = self.sessions.get(channel)
            if session is not None:
                session.on_remote_detach(fields)
        elif code == END:
            session = self.sessions.pop(channel, None)
            if session is not None:
                session.end()
        elif code == CLOSE:
            self._detach_all()
            self.send_frame(0, performative(CLOSE, [None]))
            self._flush()
            self.closed = True
            assert self.transport is not None
            self.transport.close()

    def _on_open(self, fields: list[Any]) -> None:
        self.remote_max_frame = min(fields[2] or MAX_FRAME_SIZE, MAX_FRAME_SIZE)
        idle_ms = fields[4]
        reply = [
            "devstack",
            fields[1],
            UInt(MAX_FRAME_SIZE),
            _ushort(65535),
            None,
            None,
            None,
            None,
            None,
            None,
        ]
        self.send_frame(0, performative(OPEN, reply))
        self._stage = "frames"
        if idle_ms:
            self._heartbeat_interval = idle_ms / 2000.0
            self._schedule_heartbeat()

    def _schedule_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(self._heartbeat_interval, self._send_heartbeat)

    def _send_heartbeat(self) -> None:
        if self.closed or self.transport is None:
            return
        self.transport.write(b"\x00\x00\x00\x08\x02\x00\x00\x00")
        self._schedule_heartbeat()

    def _on_begin(self, channel: int, fields: list[Any]) -> None:
        session = Session(self, channel, fields[1] or 0)
        self.sessions[channel] = session
        reply = [_ushort(channel), UInt(0), UInt(WINDOW), UInt(WINDOW), UInt(2**32 - 1),
                 None, None, None]
        self.send_frame(channel, performative(BEGIN, reply))

    # ---------------------------------------------------------------- nodes

    def route(self, link: Link) -> LinkHandler | asyncio.Future[LinkHandler] | None:
        return self._router(link)

    def _detach_all(self) -> None:
        """End every session and link of this connection, telling the nodes of each link."""
        for session in list(self.sessions.values()):
            for link in list(session.links.values()):
                link.detached = True
                if link.pending_attach is not None:
                    link.pending_attach.cancel()
                self.notify_detached(link)
            session.links.clear()
        self.sessions.clear()

    def notify_detached(self, link: Link) -> None:
        if link.handler is not None:
            self.safely(link.handler.on_detached, link)

    def safely(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("node callback %s failed", getattr(callback, "__qualname__", callback))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (fault injection)."""
        if self.transport is not None:
            self.transport.abort()


def _ushort(value: int) -> UShort:
    return UShort(value)


