"""`python -m agents.ops`: the on-call engineer's view of everything that did not go through.

Exit codes: 0 done, 1 a service call (or a replay's send) failed, 2 a usage or configuration
problem (missing setting, unknown entity), 3 a replay left something skipped.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from azure.core.exceptions import AzureError
from azure.eventhub.exceptions import EventHubError
from azure.servicebus.exceptions import ServiceBusError
from rich.console import Console
from rich.table import Table

from agents.backbone.errors import BackboneError, ConfigurationError
from agents.ops import counts, deadletters, eventgrid, outbox, poison, triage
from agents.ops.config import Catalogue, OpsError, load_settings
from agents.ops.connections import Connections

USAGE_ERROR = 2
SERVICE_ERROR = 1
SKIPPED = 3

app = typer.Typer(help="Inspect and replay dead letters, parked poison events and Event Grid "
                       "dead-letter blobs; show and sweep the outbox.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
deadletters_app = typer.Typer(help="Service Bus dead-letter queues (queues and topic "
                                   "subscriptions).", no_args_is_help=True)
poison_app = typer.Typer(help="Event Hubs poison events parked on Service Bus.",
                         no_args_is_help=True)
eventgrid_app = typer.Typer(help="Event Grid dead-letter blobs.", no_args_is_help=True)
outbox_app = typer.Typer(help="Outbox rows not yet dispatched.", no_args_is_help=True)
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(poison_app, name="poison")
app.add_typer(eventgrid_app, name="eventgrid")
app.add_typer(outbox_app, name="outbox")
triage_app = typer.Typer(help="The triage agent: manual triage, recorded invalid events, "
                              "re-classification.", no_args_is_help=True)
app.add_typer(triage_app, name="triage")

# Piped or captured output gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)


@dataclass(frozen=True)
class Options:
    settings_file: Path | None
    entities: Path | None


@app.callback()
def main(
    ctx: typer.Context,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="local.settings.json to read Values from (default: "
        "./local.settings.json if present); the environment wins over it.")] = None,
    entities: Annotated[Path | None, typer.Option(
        help="Directory with servicebus.json / eventhubs.json / eventgrid.json "
        "(default: infra/entities).")] = None,
) -> None:
    ctx.obj = Options(settings_file, entities)


@contextmanager
def session(ctx: typer.Context) -> Iterator[tuple[Connections, Catalogue]]:
    """Settings, catalogue and clients for one command; failures become exit codes."""
    options: Options = ctx.obj
    try:
        catalogue = Catalogue.load(options.entities)
        with Connections(load_settings(options.settings_file)) as connections:
            yield connections, catalogue
    except (OpsError, ConfigurationError) as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(USAGE_ERROR) from None
    except (BackboneError, ServiceBusError, EventHubError, AzureError, OSError) as error:
        errors.print(f"[red]error:[/red] {type(error).__name__}: {error}", highlight=False)
        raise typer.Exit(SERVICE_ERROR) from None


def emit_json(value: Any) -> None:
    """Plain indented JSON (not wrapped to the terminal), so it pipes into jq or a script."""
    typer.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")]


def report_replay(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """The replay table; exit code 1 when a send failed, 3 when anything was skipped."""
    if as_json:
        emit_json(rows)
    else:
        view = Table(title="Replay")
        for column in columns:
            view.add_column(column, overflow="fold")
        for row in rows:
            style = {"replayed": "green", "skipped": "yellow", "failed": "red"}.get(
                row["outcome"], "cyan")
            view.add_row(*(str(row.get(c) or "") for c in columns), style=style)
        console.print(view)
        counts = {o: sum(r["outcome"] == o for r in rows)
                  for o in ("replayed", "would replay", "skipped", "failed")}
        console.print(", ".join(f"{n} {o}" for o, n in counts.items() if n) or "nothing to do")
    if any(row["outcome"] == "failed" for row in rows):
        raise typer.Exit(SERVICE_ERROR)
    if any(row["outcome"] == "skipped" for row in rows):
        raise typer.Exit(SKIPPED)


def chosen(sequence_numbers: list[int] | None, replay_all: bool) -> list[int] | None:
    if replay_all == bool(sequence_numbers):
        errors.print("[red]error:[/red] pass either --seq N (repeatable) or --all")
        raise typer.Exit(USAGE_ERROR)
    return None if replay_all else list(sequence_numbers or [])


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                as_json: bool) -> None:
    if as_json:
        emit_json(list(rows))
        return
    view = Table(title=title)
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(view)
    console.print(f"{len(rows)} {title.lower()}")


# --- Service Bus message counts -----------------------------------------------------------

COUNT_COLUMNS = ("entity", "active", "deadLetter", "scheduled", "transfer",
                 "transferDeadLetter", "total")


@app.command("counts")
def counts_list(
    ctx: typer.Context,
    entity: Annotated[str | None, typer.Option(
        help="A queue, or a subscription as TOPIC/SUBSCRIPTION; default: every entity.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Message counts per queue and subscription from the administration API's runtime
    properties (nothing is peeked or locked)."""
    with session(ctx) as (connections, catalogue):
        found = counts.entity_counts(connections.env, catalogue, entity)
    print_table("Message counts", [row.summary() for row in found], COUNT_COLUMNS, as_json)


# --- Service Bus dead-letter queues ------------------------------------------------------

DEAD_LETTER_COLUMNS = ("entity", "sequenceNumber", "messageId", "enqueuedTime",
                       "deadLetterReason", "deadLetterErrorDescription", "deliveryCount",
                       "subject", "traceId")
REPLAY_COLUMNS = ("entity", "sequenceNumber", "messageId", "outcome", "detail")


@deadletters_app.command("list")
def deadletters_list(
    ctx: typer.Context,
    entity: Annotated[str | None, typer.Option(
        help="A queue, or a subscription as TOPIC/SUBSCRIPTION; default: every entity.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Peek every dead-lettered message (nothing is locked or consumed)."""
    with session(ctx) as (connections, catalogue):
        letters = deadletters.list_dead_letters(connections, catalogue, entity)
    print_table("Dead letters", [letter.summary() for letter in letters], DEAD_LETTER_COLUMNS,
                as_json)


@deadletters_app.command("show")
def deadletters_show(
    ctx: typer.Context,
    entity: Annotated[str, typer.Argument(help="Queue, or TOPIC/SUBSCRIPTION.")],
    sequence_number: Annotated[int, typer.Argument(metavar="SEQ",
                                                   help="The dead-lettered sequence number.")],
) -> None:
    """One dead-lettered message in full: properties and body (pretty JSON)."""
    with session(ctx) as (connections, catalogue):
        letter = deadletters.show_dead_letter(connections, catalogue, entity, sequence_number)
    emit_json(letter.to_dict())


@deadletters_app.command("replay")
def deadletters_replay(
    ctx: typer.Context,
    entity: Annotated[str, typer.Argument(help="Queue, or TOPIC/SUBSCRIPTION.")],
    seq: Annotated[list[int] | None, typer.Option(
        "--seq", help="Sequence number to replay (repeatable).")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: DryRun = False,
    as_json: JsonOption = False,
) -> None:
    """Resend to the original queue (a subscription's: to its topic) with the same MessageId
    and a replayCount / replayedFrom property, then complete the dead-lettered copy."""
    wanted = chosen(seq, replay_all)
    with session(ctx) as (connections, catalogue):
        results = deadletters.replay_dead_letters(connections, catalogue, entity,
                                                  sequence_numbers=wanted, dry_run=dry_run)
    report_replay([{"entity": r.entity, "sequenceNumber": r.sequence_number,
                    "messageId": r.message_id, "outcome": r.outcome, "detail": r.detail}
                   for r in results], REPLAY_COLUMNS, as_json)


# --- Event Hubs poison events -------------------------------------------------------------

QueueOption = Annotated[str | None, typer.Option(
    "--queue", help="Parking queue (default: the catalogue's only *-poison-events queue).")]
PARKED_COLUMNS = ("queue", "sequenceNumber", "enqueuedTime", "hub", "partitionId", "offset",
                  "eventSequenceNumber", "reason", "description")


@poison_app.command("list")
def poison_list(ctx: typer.Context, queue: QueueOption = None, as_json: JsonOption = False
                ) -> None:
    """Peek every parked poison event: hub, partition, offset, sequence number, error."""
    with session(ctx) as (connections, catalogue):
        parked = poison.list_parked(connections, catalogue, queue)
    print_table("Parked events", [p.summary() for p in parked], PARKED_COLUMNS, as_json)


@poison_app.command("show")
def poison_show(
    ctx: typer.Context,
    sequence_number: Annotated[int, typer.Argument(metavar="SEQ",
                                                   help="Sequence number in the queue.")],
    queue: QueueOption = None,
) -> None:
    """One parked event in full: where it was read, the error, its properties and body."""
    with session(ctx) as (connections, catalogue):
        parked = poison.show_parked(connections, catalogue, sequence_number, queue)
    emit_json(parked.to_dict())


@poison_app.command("replay")
def poison_replay(
    ctx: typer.Context,
    seq: Annotated[list[int] | None, typer.Option(
        "--seq", help="Sequence number in the parking queue (repeatable).")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every parked event.")] = False,
    queue: QueueOption = None,
    dry_run: DryRun = False,
    as_json: JsonOption = False,
) -> None:
    """Republish the original event to its hub and partition, then complete it here."""
    wanted = chosen(seq, replay_all)
    with session(ctx) as (connections, catalogue):
        results = poison.replay_parked(connections, catalogue, sequence_numbers=wanted,
                                       queue=queue, dry_run=dry_run)
    report_replay([{"entity": r.entity, "sequenceNumber": r.sequence_number,
                    "messageId": r.message_id, "outcome": r.outcome, "detail": r.detail}
                   for r in results], REPLAY_COLUMNS, as_json)


# --- Event Grid dead-letter blobs ---------------------------------------------------------

StorageOption = Annotated[str, typer.Option(
    "--storage", help="Setting of the storage account holding the dead-letter container.")]
ContainerOption = Annotated[str | None, typer.Option(
    "--container", help="Dead-letter container (default: those in eventgrid.json).")]
GRID_COLUMNS = ("blob", "index", "eventId", "type", "subject", "deadLetterReason",
                "deliveryAttempts", "lastHttpStatusCode", "publishTime", "replayedAt")


@eventgrid_app.command("list")
def eventgrid_list(ctx: typer.Context, storage: StorageOption = eventgrid.DEFAULT_STORAGE,
                   container: ContainerOption = None, as_json: JsonOption = False) -> None:
    """Every dead-lettered event, one row per event, with its blob and replay mark."""
    with session(ctx) as (connections, catalogue):
        events = eventgrid.list_dead_lettered(connections, catalogue, storage=storage,
                                              container=container)
    print_table("Dead-lettered events", [e.summary() for e in events], GRID_COLUMNS, as_json)


@eventgrid_app.command("show")
def eventgrid_show(
    ctx: typer.Context,
    blob: Annotated[str, typer.Argument(help="Blob name, e.g. TRIAGE/2026/11/24/6/<guid>.json")],
    storage: StorageOption = eventgrid.DEFAULT_STORAGE, container: ContainerOption = None,
) -> None:
    """The events of one dead-letter blob in full."""
    with session(ctx) as (connections, catalogue):
        events = eventgrid.show_dead_lettered(connections, catalogue, blob, storage=storage,
                                              container=container)
    emit_json([e.to_dict() for e in events])


@eventgrid_app.command("replay")
def eventgrid_replay(
    ctx: typer.Context,
    blobs: Annotated[list[str] | None, typer.Argument(help="Blob names to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every blob.")] = False,
    storage: StorageOption = eventgrid.DEFAULT_STORAGE, container: ContainerOption = None,
    dry_run: DryRun = False, as_json: JsonOption = False,
) -> None:
    """Republish the blob's events to the subscription's topic, then mark the blob replayed
    (metadata replayedAt), so a second replay skips it."""
    if replay_all == bool(blobs):
        errors.print("[red]error:[/red] either name blobs or pass --all")
        raise typer.Exit(USAGE_ERROR)
    with session(ctx) as (connections, catalogue):
        results = eventgrid.replay_dead_lettered(
            connections, catalogue, blobs=None if replay_all else blobs, storage=storage,
            container=container, dry_run=dry_run)
    report_replay([{"blob": r.blob, "eventIds": ", ".join(r.event_ids), "outcome": r.outcome,
                    "detail": r.detail} for r in results],
                  ("blob", "eventIds", "outcome", "detail"), as_json)


# --- Outbox ---------------------------------------------------------------------------------

OlderThan = Annotated[str, typer.Option("--older-than", help="Only rows at least this old "
                                        "(30s, 5m, 2h, 1d).")]
TableOption = Annotated[str | None, typer.Option(
    "--table", help="One state table (default: every table of STATE_STORAGE).")]
OUTBOX_COLUMNS = ("table", "partitionKey", "eventId", "type", "destination", "createdAt",
                  "scheduledAt", "ageSeconds")


@outbox_app.command("pending")
def outbox_pending(ctx: typer.Context, older_than: OlderThan = "0s",
                   table_name: TableOption = None, as_json: JsonOption = False) -> None:
    """Outbox rows written but not yet marked dispatched, oldest first."""
    with session(ctx) as (connections, _):
        rows = outbox.pending_rows(connections, older_than=outbox.parse_age(older_than),
                                   table=table_name)
    now = datetime.now(UTC)
    print_table("Pending outbox rows", [r.summary(now) for r in rows], OUTBOX_COLUMNS, as_json)


@outbox_app.command("sweep")
def outbox_sweep(ctx: typer.Context, older_than: OlderThan = "0s",
                 table_name: TableOption = None, as_json: JsonOption = False) -> None:
    """Dispatch pending rows now with the backbone's sweeper (MessageId = event id, so a row
    a handler is dispatching at the same moment is absorbed by duplicate detection)."""
    with session(ctx) as (connections, catalogue):
        rows = outbox.sweep(connections, catalogue, older_than=outbox.parse_age(older_than),
                            table=table_name)
    now = datetime.now(UTC)
    print_table("Dispatched outbox rows", [r.summary(now) for r in rows], OUTBOX_COLUMNS,
                as_json)


# --- Triage ------------------------------------------------------------------------------


@triage_app.command("manual")
def triage_manual(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Tickets in manual triage, with the reason each is there."""
    with session(ctx) as (connections, _):
        rows = triage.manual(connections.env)
    print_table("Tickets in manual triage", rows, triage.MANUAL_COLUMNS, as_json)


@triage_app.command("rejected")
def triage_rejected(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Invalid events the triage function recorded (and ended the delivery of)."""
    with session(ctx) as (connections, _):
        rows = triage.rejected(connections.env)
    print_table("Rejected triage events", rows, triage.REJECTED_COLUMNS, as_json)


@triage_app.command("reclassify")
def triage_reclassify(
    ctx: typer.Context,
    tickets: Annotated[list[str] | None, typer.Option(
        "--ticket", help="A ticket id (repeatable).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every ticket in manual triage.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask the model again for tickets in manual triage (once it is back); a ticket it now
    routes goes to its team's subscription."""
    if every == bool(tickets):
        errors.print("[red]error:[/red] pass either --ticket ID (repeatable) or --all")
        raise typer.Exit(USAGE_ERROR)
    with session(ctx) as (connections, _):
        rows = triage.reclassify(connections.env, None if every else list(tickets or []))
    print_table("Re-classified tickets", rows, triage.RECLASSIFIED_COLUMNS, as_json)
