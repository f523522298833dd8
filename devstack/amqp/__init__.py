"""devstack's AMQP 1.0 server core, shared by the Service Bus and Event Hubs emulators.

CONTRACT FOR NODES (how a broker plugs in)
==========================================

Server
    `AmqpServer(nodes, host="127.0.0.1", port=5672)` (devstack.amqp.server); `await start()`,
    `await stop()`, `.port` (the real port when 0 was asked), `add_node(node)`,
    `drop_connections()`. It speaks SASL (ANONYMOUS, PLAIN, MSSBCBS, EXTERNAL are all
    accepted, no auth) and serves `$cbs` itself: every put-token gets 202.
    Everything runs on ONE asyncio event loop; callbacks below run on it and must not block.
    `ServerThread(server)` runs one on its own thread and loop (`with ... as running:
    running.port`, `running.call(fn)`), for tests; `devstack.server.DevStack` is the full
    stack (config files, Service Bus, Event Hubs, faults).

Node (devstack.amqp.node.Node)
    For each attach, the server asks its nodes in order `node.open_link(link)`; the first
    one returning a `LinkHandler` owns the link. Return None for addresses you don't serve
    (the client then gets amqp:not-found); raise `AmqpError(condition, description)` to
    refuse with that error. It may also return an asyncio.Future to answer the attach
    later (its result is the handler, an AmqpError exception refuses; the server cancels it
    if the client detaches or disconnects first). `node.connection_closed(connection)` is
    called when a client connection ends.

Link (devstack.amqp.connection.Link) - what open_link sees
    `link.address`      the address without `amqps://host[:port]/`: a queue `q1`, a
                        management node `q1/$management`, an Event Hubs consumer
                        `hub/ConsumerGroups/cg/Partitions/0`, a producer `hub` or
                        `hub/Partitions/0`. (`link.raw_address` keeps the original.)
    `link.is_sender`    True when the SERVER sends on it (the client is a receiver).
    `link.source`, `link.target`  the client's terminus (codec.Described; `.value` is the
                        field list); `link.source_filters` the source filter map (decoded;
                        e.g. `filters["apache.org:selector-filter:string"]` is a Described
                        whose `.value` is the selector string).
    `link.properties`   the client's attach properties (dict, keys are Symbols == str).
    `link.desired_capabilities`  the client's desired capabilities (list of Symbols).
    `link.snd_settle_mode`, `link.rcv_settle_mode` (rcv 1 = "second": peek-lock).
    `link.source_reply` / `link.attach_properties`: set them in open_link to change what
                        the attach reply carries (source and target are echoed otherwise).
    `link.session`, `link.connection`; `link.detach(AmqpError | None)`.

LinkHandler (devstack.amqp.node.LinkHandler) - subclass, override what you need
    on_attached(link)                 after the attach reply went out
    on_transfer(link, delivery)       client -> server message (multi-frame transfers are
                                      reassembled). `delivery.payload` is the message
                                      bytes; `delivery.message_format` is
                                      message.BATCH_FORMAT (0x80013700) for a batch, whose
                                      data sections each hold one encoded message
                                      (`Message(payload).data_sections()`).
                                      Return frames.ACCEPTED_STATE or raise AmqpError (sent
                                      as `rejected`), or return None and settle later with
                                      `link.settle_incoming(delivery, state)`. The server
                                      grants the client credit and tops it up itself.
    on_flow(link)                     the client gave credit: send while `link.credit > 0`
                                      with `link.send(payload, settled=..., tag=...,
                                      context=...)` (returns an OutgoingDelivery). When
                                      `link.drain` is set, the server calls
                                      `link.finish_drain()` after on_flow returns; if you
                                      send later (new data arrived), just call link.send
                                      while link.credit > 0 - credit stays on the link.
    on_disposition(link, delivery, state)  the client settled an unsettled delivery;
                                      `delivery.context` is what you passed to send. Return
                                      the state to echo if the client waits for one (None
                                      echoes its own, and an echoed `rejected` carries no
                                      error, as the SDK needs); return `rejected(error)`
                                      for a settlement that failed (e.g. lock lost): the
                                      client sees the error, as from the service.
    on_detached(link)                 the link is gone (either side, session end, or the
                                      connection dropped).

Management request/response (devstack.amqp.node.ManagementNode)
    `ManagementNode(claims=lambda address: ..., handler=fn)`: `fn(ManagementRequest) ->
    ManagementResponse` (or an awaitable of one). The request has `.operation` (the
    `operation` application property as text, even when the SDK sent it as binary),
    `.body` (decoded amqp-value, usually a dict with str
    keys), `.application_properties`, `.message`, `.link`. The reply goes to the client's
    receiver link with the same address on the same session, correlation-id = the
    request's message-id, status under both `status-code` and `statusCode` (and
    `status-description`/`statusDescription`; `errorCondition`/`error-condition` only on
    errors: the SDK's CBS treats any error-condition as failure).
    `management_error(status, condition, description)` builds an error response.

Wire helpers
    devstack.amqp.codec: encode_value/decode_value, Symbol, UInt, ULong, Int, Timestamp,
    Array, Described. A plain int encodes as long, float as double, str as string.
    devstack.amqp.message: Message(payload) parses sections lazily (.properties,
    .application_properties, .annotations, .header, .bare, .body_value(),
    .data_sections()); build_message(body=..., application_properties=...,
    annotations=..., <property>=...) builds one; section(code, value) encodes a section.
    Performatives always go out with every field present (nulls where unset).

Registration from configs (devstack.server.DevStack)
    DevStack loads every --config file; a file whose UserConfig has `NamespaceConfig` is
    an Event Hubs config: DevStack calls `devstack.eventhubs.create_node(documents,
    data_dir=<--data DIR or None>, faults=<devstack.faults.Faults>)` with the parsed Event
    Hubs config documents (whole documents, comments already stripped) and registers the
    Node it returns. `faults.before_send(path)` raises the armed server-busy AmqpError.
"""

from devstack.amqp.connection import IncomingDelivery, Link, OutgoingDelivery
from devstack.amqp.frames import ACCEPTED_STATE, AmqpError
from devstack.amqp.node import (
    LinkHandler,
    ManagementNode,
    ManagementRequest,
    ManagementResponse,
    Node,
    management_error,
)
from devstack.amqp.server import AmqpServer

__all__ = [
    "ACCEPTED_STATE",
    "AmqpError",
    "AmqpServer",
    "IncomingDelivery",
    "Link",
    "LinkHandler",
    "ManagementNode",
    "ManagementRequest",
    "ManagementResponse",
    "Node",
    "OutgoingDelivery",
    "management_error",
]
