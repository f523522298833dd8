"""`python -m devstack up`: serve Service Bus (and Event Hubs) on 127.0.0.1:5672."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated
from urllib.parse import urlsplit

import typer

from devstack.config import ConfigError
from devstack.host import app_command, emulator_settings, run_app
from devstack.host.settings import AppSettings
from devstack.llm import DEFAULT_PORT as LLM_PORT
from devstack.llm import LocalModelServer
from devstack.server import MANAGEMENT_PORT, DevStack


def model_settings(app_dir: Path, endpoint: str) -> dict[str, str]:
    """Point the app's AZURE_OPENAI_ENDPOINT at the local model when unset or loopback."""
    current = AppSettings.load(app_dir, environ={}).values.get("AZURE_OPENAI_ENDPOINT", "")
    local = not current or urlsplit(current).hostname in ("127.0.0.1", "localhost", "::1")
    return {"AZURE_OPENAI_ENDPOINT": endpoint} if local else {}


app = typer.Typer(add_completion=False, help="Local Azure Service Bus and Event Hubs over AMQP.")


@app.callback()
def main() -> None:
    """devstack: the Azure services a function app needs, locally, with no Docker."""


@app.command()
def up(
    config: Annotated[
        list[Path] | None,
        typer.Option("--config", "-c", help="Emulator Config.json (Service Bus or Event Hubs); "
                     "repeat for several."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="AMQP port (0 picks a free one).")] = 5672,
    data: Annotated[
        Path | None,
        typer.Option(help="Keep messages in this directory across restarts."),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option("--admin-port", help="Serve the HTTP fault-injection API on this port."),
    ] = None,
    app_dir: Annotated[
        Path | None,
        typer.Option("--app", help="Also run this function app on the devstack host."),
    ] = None,
    management_port: Annotated[
        int | None,
        typer.Option("--management-port", help="Service Bus administration API and /health "
                     "(as Microsoft's emulator); default 5300, or a free one with --port 0."),
    ] = None,
    llm_port: Annotated[
        int | None,
        typer.Option("--llm-port", help=f"Local model endpoint (Azure OpenAI and OpenAI REST "
                     f"shapes) on this port; default {LLM_PORT}, or a free one with --port 0."),
    ] = None,
) -> None:
    """Start the server and print the connection string; stop on Ctrl-C or SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="devstack: %(levelname)s %(message)s")
    if management_port is None:
        management_port = 0 if port == 0 else MANAGEMENT_PORT
    try:
        stack = DevStack(config or [], host=host, port=port, data_dir=data,
                         admin_port=admin_port, management_port=management_port)
    except ConfigError as exc:
        typer.echo(f"devstack: invalid config: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        stack.start()
    except OSError as exc:
        typer.echo(f"devstack: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"devstack: invalid config: {exc}", err=True)
        raise typer.Exit(2) from None
    if llm_port is None:
        llm_port = 0 if port == 0 else LLM_PORT
    llm = LocalModelServer(host=host, port=llm_port)
    try:
        llm.start()
    except OSError as exc:
        stack.stop()
        typer.echo(f"devstack: cannot listen on {host}:{llm_port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    typer.echo(f"devstack listening on {host}:{stack.port}")
    typer.echo(stack.connection_string, nl=True)
    typer.echo(f"administration API: {stack.management_connection_string}")
    if stack.admin_url is not None:
        typer.echo(f"fault API: {stack.admin_url}/faults/...")
    typer.echo(f"local model endpoint: {llm.base_url} (Azure OpenAI: /openai/deployments/"
               f"<name>/chat/completions, OpenAI: {llm.openai_base_url}; faults: "
               f"{llm.base_url}/faults/...)")
    sys.stdout.flush()
    if app_dir is not None:
        logging.getLogger("devstack.host").setLevel(logging.INFO)
        # Blocks until SIGINT/SIGTERM; emulator connection settings follow the chosen port.
        run_app(app_dir, settings={**emulator_settings(app_dir, stack.connection_string),
                                   **model_settings(app_dir, llm.base_url)},
                data_dir=data)
        stopping.set()
    while not stopping.wait(0.5):
        pass
    llm.stop()
    stack.stop()
    typer.echo("devstack stopped")


app.command(name="app")(app_command)

if __name__ == "__main__":
    app()
