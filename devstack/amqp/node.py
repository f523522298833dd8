"""Nodes: what a broker plugs into the AMQP server (see the contract in __init__.py)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devstack.amqp.codec import Described, Int, Symbol
from devstack.amqp.frames import ACCEPTED_STATE, AmqpError, rejected
from devstack.amqp.message import Message, build_message

if TYPE_CHECKING:
    from devstack.amqp.connection import Connection, IncomingDelivery, Link, OutgoingDelivery

log = logging.getLogger("devstack.amqp")


class LinkHandler:
    """Callbacks for one attached link; every method runs on the server's event loop."""

    def on_attached(self, link: Link) -> None:
        """The attach reply has been sent; the link may be used."""

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        """A complete message arrived on a link the server receives on. Return the outcome
        (e.g. ACCEPTED_STATE, or raise AmqpError to reject), or None to settle later with
        `link.settle_incoming(delivery, state)`."""
        raise AmqpError("amqp:not-allowed", "this node does not accept messages")

    def on_flow(self, link: Link) -> None:
        """The client granted credit on a link the server sends on (`link.credit`); send up
        to that many messages with `link.send(...)`. If `link.drain` is set, the server
        calls `link.finish_drain()` after this returns."""

    def on_disposition(
        self, link: Link, delivery: OutgoingDelivery, state: Any
    ) -> Described | None:
        """The client settled a message the server sent. Return the state to echo back when
        the client waits for it (None echoes the client's own state)."""
        return None

    def on_detached(self, link: Link) -> None:
        """The link is gone (detached by either side, its session ended or the connection
        dropped). Unsettled deliveries on it will never be settled."""


class Node:
    """A broker component that claims link addresses."""

    def open_link(self, link: Link) -> LinkHandler | asyncio.Future[LinkHandler] | None:
        """Return a handler if this node serves `link.address`, else None. Raise AmqpError
        to refuse the attach with that error (e.g. a session that is locked). May set
        `link.source_reply` and `link.attach_properties` for the attach reply. May return
        a Future instead, to answer the attach later: its result is the handler, its
        AmqpError exception a refusal; it is cancelled if the client goes away first."""
        return None

    def connection_closed(self, connection: Connection) -> None:
        """A client connection ended; release anything it held."""


# ---------------------------------------------------------------- management requests


@dataclass
class ManagementRequest:
    """A request message on a management node (`$cbs`, `<entity>/$management`, ...)."""

    message: Message
    link: Link
    operation: str
    body: Any
    application_properties: dict[Any, Any]


@dataclass
class ManagementResponse:
    status: int = 200
    body: Any = None
    description: str | None = None
    error_condition: str | None = None
    application_properties: dict[str, Any] = field(default_factory=dict)


ManagementHandler = Callable[
    [ManagementRequest], "ManagementResponse | Awaitable[ManagementResponse]"
]


def _text(value: Any) -> str:
    """An application property as text: the SDKs send some as binary (e.g. Event Hubs)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def management_error(status: int, condition: str, description: str) -> ManagementResponse:
    return ManagementResponse(status=status, description=description, error_condition=condition)


def _reply_bytes(request: ManagementRequest, response: ManagementResponse) -> bytes:
    props: dict[Any, Any] = {
        "statusCode": Int(response.status),
        "status-code": Int(response.status),
    }
    if response.description is not None:
        props["statusDescription"] = response.description
        props["status-description"] = response.description
    if response.error_condition is not None:
        props["errorCondition"] = Symbol(response.error_condition)
        props["error-condition"] = Symbol(response.error_condition)
    props.update(response.application_properties)
    return build_message(
        body=response.body,
        application_properties=props,
        correlation_id=request.message.prop("message_id"),
    )


class ManagementNode(Node):
    """Request/response over a pair of links with the same address on one session.

    The client sends a request on its sender link; the reply goes to the client's receiver
    link with the same address in the same session, with correlation-id = the request's
    message-id and the status under both `statusCode` and `status-code`.
    """

    def __init__(
        self, claims: Callable[[str], bool], handler: ManagementHandler
    ) -> None:
        self._claims = claims
        self._handler = handler

    def open_link(self, link: Link) -> LinkHandler | None:
        if not self._claims(link.address):
            return None
        return _ManagementLinkHandler(self._handler)


class _ManagementLinkHandler(LinkHandler):
    def __init__(self, handler: ManagementHandler) -> None:
        self._handler = handler
        self._backlog: deque[bytes] = deque()
        self._pending: set[asyncio.Future[None]] = set()

    def on_transfer(self, link: Link, delivery: IncomingDelivery) -> Described | None:
        message = Message(delivery.payload)
        app = message.application_properties
        operation = app.get("operation")
        request = ManagementRequest(
            message=message,
            link=link,
            operation=_text(operation),
            body=message.body_value(),
            application_properties=app,
        )
        try:
            result = self._handler(request)
        except AmqpError as exc:
            result = management_error(400, exc.condition, exc.description or exc.condition)
        except Exception as exc:
            log.exception("management operation %s failed", request.operation)
            result = management_error(500, "com.microsoft:internal-error", str(exc))
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._reply_later(request, result))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            assert isinstance(result, ManagementResponse)
            self._reply(request, result)
        return ACCEPTED_STATE

    async def _reply_later(
        self, request: ManagementRequest, pending: Awaitable[ManagementResponse]
    ) -> None:
        try:
            response = await pending
        except AmqpError as exc:
            response = management_error(400, exc.condition, exc.description or exc.condition)
        except Exception as exc:
            log.exception("management operation %s failed", request.operation)
            response = management_error(500, "com.microsoft:internal-error", str(exc))
        self._reply(request, response)

    def _reply(self, request: ManagementRequest, response: ManagementResponse) -> None:
        link = request.link
        replies = link.session.links_at(link.address, sending=True)
        if not replies:
            log.warning("no reply link for management request on %s", link.address)
            return
        reply_link = replies[0]
        handler = reply_link.handler
        payload = _reply_bytes(request, response)
        if isinstance(handler, _ManagementLinkHandler):
            handler.enqueue(reply_link, payload)

    def enqueue(self, link: Link, payload: bytes) -> None:
        self._backlog.append(payload)
        self.on_flow(link)

    def on_flow(self, link: Link) -> None:
        while self._backlog and link.credit > 0 and not link.detached:
            link.send(self._backlog.popleft(), settled=True)


def cbs_node() -> ManagementNode:
    """The `$cbs` claims-based-security node: every put-token is accepted (no auth)."""

    def put_token(request: ManagementRequest) -> ManagementResponse:
        if request.operation != "put-token":
            return management_error(
                400, "amqp:not-implemented", f"unsupported operation {request.operation}"
            )
        return ManagementResponse(status=202, description="Accepted")

    return ManagementNode(lambda address: address == "$cbs", put_token)


__all__ = [
    "ACCEPTED_STATE",
    "LinkHandler",
    "ManagementNode",
    "ManagementRequest",
    "ManagementResponse",
    "Node",
    "cbs_node",
    "management_error",
    "rejected",
]
