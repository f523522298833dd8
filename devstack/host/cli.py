"""`python -m devstack app DIR` and `up --app DIR`: run a function app until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from devstack.eventgrid import EventGridConfig, LocalEventGrid
from devstack.host.runtime import FunctionsHost
from devstack.host.settings import AppSettings

APP_EVENT_GRID_CONFIG = Path("infra") / "entities" / "eventgrid.json"
EMULATOR_MARKER = "UseDevelopmentEmulator=true"


def emulator_settings(app_dir: Path, connection_string: str) -> dict[str, str]:
    """Point every emulator connection setting of the app at a devstack on another port."""
    settings = AppSettings.load(app_dir, environ={})
    return {name: connection_string for name, value in settings.values.items()
            if EMULATOR_MARKER.lower() in value.lower()}


async def serve_app(app_dir: Path, *, port: int | None = None,
                    settings: Mapping[str, str] | None = None,
                    event_grid_config: Path | None = None, event_grid_port: int | None = None,
                    data_dir: Path | None = None, stop: asyncio.Event) -> None:
    """Run the host (and a local Event Grid wired to it) until `stop` is set; with
    `data_dir`, Event Grid's pending retries are kept there across restarts."""
    host = FunctionsHost(app_dir, port=port, settings=settings)
    await host.start()
    event_grid: LocalEventGrid | None = None
    try:
        _print_keys(host)
        config_path = event_grid_config or (app_dir / APP_EVENT_GRID_CONFIG)
        if config_path.exists():
            event_grid = LocalEventGrid(
                EventGridConfig.load(config_path), function_endpoint=host.event_grid_webhook,
                dead_letter_storage=host.settings.get("AzureWebJobsStorage"),
                port=event_grid_port, data_dir=data_dir)
            await event_grid.start()
            for topic in event_grid.config.topics:
                typer.echo(f"Event Grid topic {topic.name}: "
                           f"{event_grid.topic_endpoint(topic.name)} (key {topic.key})")
        typer.echo(f"Functions host running on {host.base_url}; Ctrl-C to stop")
        await stop.wait()
    finally:
        if event_grid is not None:
            await event_grid.stop()
        await host.stop()


def _print_keys(host: FunctionsHost) -> None:
    for name, key in (("DEVSTACK_HOST_FUNCTION_KEY", host.keys.function),
                      ("DEVSTACK_HOST_MASTER_KEY", host.keys.master)):
        origin = "from settings" if host.settings.get(name) else "generated"
        typer.echo(f"{name}={key} ({origin})")


def run_app(app_dir: Path, *, port: int | None = None,
            settings: Mapping[str, str] | None = None, event_grid_config: Path | None = None,
            event_grid_port: int | None = None, data_dir: Path | None = None) -> None:
    """Blocking: serve the app until SIGINT or SIGTERM."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        await serve_app(app_dir, port=port, settings=settings,
                        event_grid_config=event_grid_config,
                        event_grid_port=event_grid_port, data_dir=data_dir, stop=stop)

    asyncio.run(main())


def app_command(
    app_dir: Annotated[Path, typer.Argument(help="Folder holding function_app.py, host.json "
                                                 "and local.settings.json.")],
    port: Annotated[int | None, typer.Option(help="HTTP port (default: local.settings.json "
                                                  "Host.LocalHttpPort, else a free one).")] = None,
    eventgrid: Annotated[Path | None, typer.Option(
        help="Event Grid topics config (default: DIR/infra/entities/eventgrid.json if "
             "present).")] = None,
    eventgrid_port: Annotated[int | None, typer.Option(help="Event Grid port (default: "
                                                            "a free one).")] = None,
) -> None:
    """Run a v2 Python function app's functions the way the Azure Functions host does."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    # The Service Bus extension decodes SDK-type messages with uamqp starting inside the
    # delivery annotations (as it gets them from Azure's host too), and uamqp's C layer
    # reports that at INFO: nine lines per message, nothing wrong with the message.
    logging.getLogger("uamqp").setLevel(logging.WARNING)
    run_app(app_dir, port=port, event_grid_config=eventgrid, event_grid_port=eventgrid_port)
