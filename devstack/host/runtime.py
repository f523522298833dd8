"""The host: index the app, apply settings, start the HTTP front door and trigger listeners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Collection, Coroutine, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from devstack.azurite import free_port
from devstack.host.http import EVENT_GRID_WEBHOOK, HostKeys, HttpFrontDoor
from devstack.host.index import (
    RETRY_CAPABLE_TRIGGERS,
    FunctionSpec,
    app_import_path,
    index_functions,
    load_app,
)
from devstack.host.invocation import Invoker
from devstack.host.outputs import OutputSenders
from devstack.host.settings import (
    AppSettings,
    HostConfig,
    SettingsError,
    parse_timespan,
    restore_environment,
)
from devstack.host.timer import TimerListener, schedule_monitor

log = logging.getLogger("devstack.host")
Listener = Callable[[], Coroutine[Any, Any, None]]
STOP_GRACE_SECONDS = 10.0


class FunctionsHost:
    """Runs a v2 Python function app's functions the way the Azure Functions host does.

    `async with FunctionsHost(app_dir) as host:` indexes `function_app.py`, exports the
    settings from local.settings.json, serves HTTP on `host.base_url` and starts a listener
    per non-HTTP trigger.
    """

    def __init__(self, app_dir: Path, *, settings: Mapping[str, str] | None = None,
                 port: int | None = None, bind: str = "127.0.0.1",
                 functions: Collection[str] | None = None) -> None:
        self.app_dir = app_dir.resolve()
        self.settings = AppSettings.load(self.app_dir)
        if settings:
            self.settings = AppSettings({**self.settings.values, **settings})
        self.config = HostConfig.load(self.app_dir)
        configured_port = self.settings.get("DEVSTACK_HOST_HTTP_PORT")
        self.port = port or (int(configured_port) if configured_port else free_port(bind))
        # Like host.json's `functions` list: load only these (all when None).
        self._only = functions if functions is not None else self.config.document.get(
            "functions")
        self.bind = bind
        self.keys = HostKeys.from_settings(self.settings)
        self.functions: list[FunctionSpec] = []
        self._outputs = OutputSenders(self.settings)
        timeout = self.config.document.get("functionTimeout")
        self.invoker = Invoker(
            function_directory=str(self.app_dir), outputs=self._outputs.send,
            # The Python worker's knob for sync functions' thread pool (default as Python's).
            max_workers=int(threads) if (threads := self.settings.get(
                "PYTHON_THREADPOOL_THREAD_COUNT")) else None,
            function_timeout=parse_timespan(str(timeout)).total_seconds() if timeout else None)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._previous_environment: dict[str, str | None] = {}
        self._added_path: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.bind}:{self.port}"

    def event_grid_webhook(self, function_name: str) -> str:
        """The URL Event Grid delivers to for one function, system key included."""
        return (f"{self.base_url}{EVENT_GRID_WEBHOOK}?functionName={function_name}"
                f"&code={self.keys.event_grid}")

    async def start(self) -> FunctionsHost:
        self._previous_environment = self.settings.export()
        self._added_path = app_import_path(self.app_dir)
        self.functions = [spec for spec in index_functions(load_app(self.app_dir))
                          if self._enabled(spec.name)]
        front_door = HttpFrontDoor(functions=self.functions,
                                   route_prefix=self.config.route_prefix,
                                   keys=self.keys, invoker=self.invoker)
        self._runner = web.AppRunner(front_door.application(), access_log=None,
                                     shutdown_timeout=STOP_GRACE_SECONDS)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.bind, self.port).start()
        for route in front_door.routes:
            log.info("%s: [%s] %s/%s", route.spec.name,
                     ",".join(sorted(route.methods)) or "ALL", self.base_url,
                     route.template.template)
        for spec in self.functions:
            if spec.retry and spec.trigger_type not in RETRY_CAPABLE_TRIGGERS:
                log.warning("Function 'Functions.%s': retry policies do not apply to %s "
                            "triggers; the policy is ignored, as on Azure", spec.name,
                            spec.trigger_type)
            try:
                listener = self._listener(spec)
            except (SettingsError, ValueError) as exc:
                # As the Azure host: one misconfigured function is in error, the rest run.
                log.error("The 'Functions.%s' function is in error: %s", spec.name, exc)
                continue
            if listener is not None:
                task = asyncio.create_task(listener(), name=spec.name)
                task.add_done_callback(_report_listener_end)
                self._tasks.append(task)
        log.info("Host started: %d functions, HTTP on %s", len(self.functions), self.base_url)
        return self

    def _enabled(self, name: str) -> bool:
        if self._only is not None and name not in self._only:
            return False
        disabled = self.settings.get(f"AzureWebJobs.{name}.Disabled", "false") or "false"
        return disabled.lower() not in ("true", "1")

    def _listener(self, spec: FunctionSpec) -> Listener | None:
        kind = spec.trigger_type
        if kind in ("httpTrigger", "eventGridTrigger"):
            return None  # served by the HTTP front door
        if kind == "timerTrigger":
            return TimerListener(spec, self.settings, self.invoker,
                                 schedule_monitor(self.settings)).run
        if kind == "serviceBusTrigger":
            from devstack.host.servicebus import ServiceBusListener

            return ServiceBusListener(spec, self.settings, self.config, self.invoker).run
        if kind == "eventHubTrigger":
            from devstack.host.eventhubs import EventHubListener

            return EventHubListener(spec, self.settings, self.config, self.invoker).run
        log.error("Function 'Functions.%s': devstack has no listener for %r triggers; "
                  "it will not run", spec.name, kind)
        return None

    async def stop(self) -> None:
        """Stop listeners, HTTP and output clients, each within STOP_GRACE_SECONDS."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # A receiver whose close is never answered must not hang the host's shutdown.
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                log.warning("Listener for 'Functions.%s' did not stop within %ss; abandoned",
                            task.get_name(), STOP_GRACE_SECONDS)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        try:
            await asyncio.wait_for(self._outputs.close(), STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("Output clients did not close within %ss; abandoned",
                        STOP_GRACE_SECONDS)
        self.invoker.close()
        restore_environment(self._previous_environment)
        self._previous_environment = {}
        if self._added_path is not None:
            with contextlib.suppress(ValueError):
                sys.path.remove(self._added_path)
            self._added_path = None

    async def __aenter__(self) -> FunctionsHost:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def _report_listener_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Listener for 'Functions.%s' stopped", task.get_name(),
                  exc_info=task.exception())
