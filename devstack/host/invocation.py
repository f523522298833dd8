"""Invoke one function as the host does: bind arguments, run, log, send outputs, retry."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import azure.functions as func
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
    wait_fixed,
)

from devstack.host.index import RETRY_CAPABLE_TRIGGERS, FunctionSpec
from devstack.host.settings import parse_timespan

log = logging.getLogger("devstack.host")
T = TypeVar("T")
RETURN_BINDING = "$return"


class FunctionTimeout(TimeoutError):
    """The invocation ran past host.json's functionTimeout."""


class OutputSlot(func.Out[T], Generic[T]):
    """The `func.Out[T]` a function sets; sent by the host after the function succeeds."""

    def __init__(self) -> None:
        self._value: T | None = None
        self.is_set = False

    def set(self, val: T) -> None:
        self._value = val
        self.is_set = True

    def get(self) -> T:
        if not self.is_set:
            raise LookupError("output was not set")
        return self._value  # type: ignore[return-value]


class _RetryContext:
    """What `context.retry_context` offers (its abstract type is not exported)."""

    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> Any:
        raise NotImplementedError("devstack does not carry the previous attempt's exception")


class _TraceContext:
    """What `context.trace_context` offers (its abstract type is not exported)."""

    def __init__(self, trace_parent: str) -> None:
        self._trace_parent = trace_parent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class InvocationContext(func.Context):
    """The `func.Context` a function may ask for."""

    def __init__(self, spec: FunctionSpec, invocation_id: str, retry: _RetryContext,
                 function_directory: str) -> None:
        self._spec = spec
        self._invocation_id = invocation_id
        self._retry = retry
        self._function_directory = function_directory
        self._local = threading.local()
        trace_id = uuid.uuid4().hex
        self._trace = _TraceContext(f"00-{trace_id}-{invocation_id.replace('-', '')[:16]}-01")

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]
        return self._local

    @property
    def function_name(self) -> str:
        return self._spec.name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _TraceContext:  # type: ignore[override]
        return self._trace

    @property
    def retry_context(self) -> _RetryContext:  # type: ignore[override]
        return self._retry


@dataclass(frozen=True)
class InvocationRecord:
    """One finished invocation, as the host's `Executed ...` line reports it."""

    function_name: str
    invocation_id: str
    succeeded: bool
    duration_ms: float
    retry_count: int
    error: str | None


OutputSender = Callable[[Mapping[str, Any], Any], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """`@app.retry(...)`: fixed delay or exponential backoff, -1 meaning retry forever."""

    max_retry_count: int
    wait: Any

    @classmethod
    def from_setting(cls, setting: Mapping[str, Any]) -> RetryPolicy:
        strategy = str(setting["strategy"]).lower()
        max_retry_count = int(setting["max_retry_count"])
        if strategy == "fixed_delay":
            delay = parse_timespan(str(setting["delay_interval"])).total_seconds()
            return cls(max_retry_count, wait_fixed(delay))
        if strategy == "exponential_backoff":
            minimum = parse_timespan(str(setting["minimum_interval"])).total_seconds()
            maximum = parse_timespan(str(setting["maximum_interval"])).total_seconds()
            # First retry waits the minimum, each next one doubles it, capped at the maximum.
            return cls(max_retry_count, wait_exponential(multiplier=minimum, min=minimum,
                                                         max=maximum))
        raise ValueError(f"unknown retry strategy {setting['strategy']!r}")


class Invoker:
    """Runs functions: async ones on the loop, sync ones in a thread pool, like the worker."""

    def __init__(self, *, function_directory: str, outputs: OutputSender,
                 max_workers: int | None = None, function_timeout: float | None = None) -> None:
        self._function_directory = function_directory
        self._timeout = function_timeout
        self._send_output = outputs
        self._pool = ThreadPoolExecutor(max_workers=max_workers,
                                        thread_name_prefix="devstack-function")
        self.records: list[InvocationRecord] = []

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def invoke(self, spec: FunctionSpec, trigger_value: Any, *, reason: str,
                     use_retry_policy: bool = True,
                     extra_arguments: Mapping[str, Any] | None = None) -> Any:
        """Invoke once, or per the function's retry policy where its trigger supports one."""
        policy = None
        if use_retry_policy and spec.retry and spec.trigger_type in RETRY_CAPABLE_TRIGGERS:
            policy = RetryPolicy.from_setting(spec.retry)
        if policy is None:
            return await self._invoke_once(spec, trigger_value, reason, 0, 0,
                                           extra_arguments or {})
        stop = stop_never if policy.max_retry_count < 0 else stop_after_attempt(
            policy.max_retry_count + 1)
        retrying = AsyncRetrying(stop=stop, wait=policy.wait, reraise=True,
                                 retry=retry_if_exception_type(Exception),
                                 before_sleep=functools.partial(_log_retry, spec))
        async for attempt in retrying:
            with attempt:
                retry_count = attempt.retry_state.attempt_number - 1
                return await self._invoke_once(spec, trigger_value, reason, retry_count,
                                               policy.max_retry_count, extra_arguments or {})
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _invoke_once(self, spec: FunctionSpec, trigger_value: Any, reason: str,
                           retry_count: int, max_retry_count: int,
                           extra_arguments: Mapping[str, Any]) -> Any:
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", spec.name, reason,
                 invocation_id)
        started = time.perf_counter()
        slots = {b["name"]: OutputSlot[Any]() for b in spec.outputs
                 if b["name"] != RETURN_BINDING}
        arguments: dict[str, Any] = {str(spec.trigger["name"]): trigger_value}
        arguments.update({name: slot for name, slot in slots.items() if name in spec.parameters})
        arguments.update(extra_arguments)
        context_name = spec.context_parameter()
        if context_name:
            arguments[context_name] = InvocationContext(
                spec, invocation_id, _RetryContext(retry_count, max_retry_count),
                self._function_directory)
        error: BaseException | None = None
        try:
            result = await self._call(spec, arguments)
            await self._send_outputs(spec, slots, result)
        except BaseException as exc:  # a cancelled invocation is reported as failed too
            error = exc
            raise
        finally:
            duration = (time.perf_counter() - started) * 1000
            record = InvocationRecord(spec.name, invocation_id, error is None, duration,
                                      retry_count, None if error is None else repr(error))
            self._finish(record, error)
        return result

    async def _call(self, spec: FunctionSpec, arguments: dict[str, Any]) -> Any:
        if spec.is_async:
            running: Awaitable[Any] = spec.handler(**arguments)
        else:
            loop = asyncio.get_running_loop()
            call = functools.partial(contextvars.copy_context().run, spec.handler, **arguments)
            running = loop.run_in_executor(self._pool, call)
        scope = asyncio.timeout(self._timeout)
        try:
            async with scope:
                return await running
        except TimeoutError:
            if not scope.expired():
                raise  # the function's own timeout, not the host's
            # A sync function's thread cannot be stopped; Azure would recycle the host here.
            raise FunctionTimeout(f"Timeout value of {self._timeout}s exceeded by function "
                                  f"'Functions.{spec.name}'") from None

    async def _send_outputs(self, spec: FunctionSpec, slots: Mapping[str, OutputSlot[Any]],
                            result: Any) -> None:
        for binding in spec.outputs:
            name = binding["name"]
            if name == RETURN_BINDING:
                if binding["type"] != "http" and result is not None:
                    await self._send_output(binding, result)
            elif slots[name].is_set:
                await self._send_output(binding, slots[name].get())

    def _finish(self, record: InvocationRecord, error: BaseException | None) -> None:
        outcome = "Succeeded" if record.succeeded else "Failed"
        line = "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)"
        if error is None:
            log.info(line, record.function_name, outcome, record.invocation_id,
                     record.duration_ms)
        else:
            log.error(line, record.function_name, outcome, record.invocation_id,
                      record.duration_ms, exc_info=error)
        self.records.append(record)


def _log_retry(spec: FunctionSpec, state: RetryCallState) -> None:
    delay = state.next_action.sleep if state.next_action else 0.0
    log.warning("Function 'Functions.%s' failed; retry %d in %.3fs (retry policy)",
                spec.name, state.attempt_number, delay)
