"""The host's Service Bus settlement service: the gRPC endpoint `ServiceBusMessageActions` calls.

On Azure the Functions host serves the `Settlement` service (complete, abandon, deadletter,
defer, renew lock) on its gRPC port and starts the Python worker with `--host`, `--port` and
`--functions-grpc-max-message-length`; azurefunctions-extensions-bindings-servicebus'
`ServiceBusMessageActions` reads those from the worker's command line and settles a message
by its lock token. devstack runs the app in its own process, so it serves the same service
(the servicer and stubs the package ships in `azurefunctions.extensions.bindings.protos`) on
a free loopback port and puts the same three arguments on this process's command line.

The package's client is one per process and reads the arguments once, so the service is one
per process too: a process running several hosts (a test session) settles each message on
the receiver of the host that delivered it, found by lock token.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import grpc
from azure.servicebus.exceptions import ServiceBusError
from azurefunctions.extensions.bindings.protos import settlement_pb2_grpc
from google.protobuf.empty_pb2 import Empty

log = logging.getLogger("devstack.host")
GRPC_MAX_MESSAGE_LENGTH = 2_147_483_647  # what the Azure host passes its workers
SETTLE_TIMEOUT_SECONDS = 30.0


class HeldMessages(Protocol):
    """The messages one invocation holds locks on, settled by lock token on the host loop."""

    def complete(self, lock_token: str) -> Awaitable[None]: ...

    def abandon(self, lock_token: str) -> Awaitable[None]: ...

    def deadletter(self, lock_token: str, reason: str | None,
                   description: str | None) -> Awaitable[None]: ...

    def defer(self, lock_token: str) -> Awaitable[None]: ...

    def renew_lock(self, lock_token: str) -> Awaitable[None]: ...


class AlreadySettled(ValueError):
    """The message was settled before (by the function or by the host)."""


class _Servicer(settlement_pb2_grpc.SettlementServicer):  # type: ignore[misc]
    """Settles on the event loop that holds the receiver; gRPC calls arrive on its threads."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[HeldMessages, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()

    def hold(self, lock_token: str, messages: HeldMessages,
             loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._held[lock_token] = (messages, loop)

    def release(self, lock_token: str) -> None:
        with self._lock:
            self._held.pop(lock_token, None)

    def _held_by(self, context: grpc.ServicerContext,
                 lock_token: str) -> tuple[HeldMessages, asyncio.AbstractEventLoop]:
        with self._lock:
            held = self._held.get(lock_token)
        if held is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no message with lock token {lock_token} is held by this host "
                          "(its invocation has ended, or it was never delivered here)")
            raise AssertionError("unreachable: abort() raises")
        return held

    def _settle(self, context: grpc.ServicerContext, lock_token: str,
                action: Callable[[HeldMessages], Awaitable[None]]) -> Empty:
        messages, loop = self._held_by(context, lock_token)

        async def run() -> None:
            await action(messages)

        future = asyncio.run_coroutine_threadsafe(run(), loop)
        try:
            future.result(SETTLE_TIMEOUT_SECONDS)
        except AlreadySettled as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except ServiceBusError as error:  # lock lost, entity gone, connection dropped
            context.abort(grpc.StatusCode.ABORTED, f"{type(error).__name__}: {error}")
        except TimeoutError:
            future.cancel()
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"settling {lock_token} took over {SETTLE_TIMEOUT_SECONDS}s (an "
                          "async function that calls the blocking message actions holds the "
                          "loop the settlement needs; make the function sync)")
        except Exception as error:  # anything else the SDK raises reaches the caller too
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
        return Empty()

    def Complete(self, request: Any, context: grpc.ServicerContext) -> Empty:
        return self._settle(context, request.locktoken, lambda m: m.complete(request.locktoken))

    def Abandon(self, request: Any, context: grpc.ServicerContext) -> Empty:
        _refuse_property_changes(request, context)
        return self._settle(context, request.locktoken, lambda m: m.abandon(request.locktoken))

    def Deadletter(self, request: Any, context: grpc.ServicerContext) -> Empty:
        _refuse_property_changes(request, context)
        reason = request.deadletterReason.value if request.HasField(
            "deadletterReason") else None
        description = request.deadletterErrorDescription.value if request.HasField(
            "deadletterErrorDescription") else None
        return self._settle(context, request.locktoken,
                            lambda m: m.deadletter(request.locktoken, reason, description))

    def Defer(self, request: Any, context: grpc.ServicerContext) -> Empty:
        _refuse_property_changes(request, context)
        return self._settle(context, request.locktoken, lambda m: m.defer(request.locktoken))

    def RenewMessageLock(self, request: Any, context: grpc.ServicerContext) -> Empty:
        return self._settle(context, request.locktoken,
                            lambda m: m.renew_lock(request.locktoken))


def _refuse_property_changes(request: Any, context: grpc.ServicerContext) -> None:
    # The package always sends b"" today; a client that sends more must not be ignored.
    if request.propertiesToModify:
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "devstack does not apply propertiesToModify on settlement")


class SettlementService:
    """The process's one settlement endpoint, started on first use and kept for the process."""

    _shared: SettlementService | None = None
    _start_lock = threading.Lock()

    def __init__(self) -> None:
        self.servicer = _Servicer()
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8,
                                                      thread_name_prefix="devstack-settle"))
        settlement_pb2_grpc.add_SettlementServicer_to_server(self.servicer, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        # The worker's command line as the Azure host writes it; argparse takes the last
        # occurrence, so these win over any --host/--port the process was started with.
        sys.argv += ["--host", "127.0.0.1", "--port", str(self.port),
                     "--functions-grpc-max-message-length", str(GRPC_MAX_MESSAGE_LENGTH)]
        log.info("Service Bus settlement service listening on 127.0.0.1:%d", self.port)

    @classmethod
    def shared(cls) -> SettlementService:
        with cls._start_lock:
            if cls._shared is None:
                cls._shared = SettlementService()
            return cls._shared
