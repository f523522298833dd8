"""`make chaos`: a seeded, bounded chaos run on the local cloud, judged by invariants.
(the run, the report and the command line)"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agents.ops.deadletters import list_dead_letters
from agents.ops.outbox import pending_rows
from scripts import demo
from scripts.chaos.core import (
    LAYERS,
    PLATFORM_INVARIANTS,
    ChaosCloud,
    FaultEvent,
    FaultRunner,
    Letter,
    Options,
    PlatformEvidence,
    Promise,
    Report,
    Say,
    Verdict,
    Workload,
    chaos_cloud,
    fault_kinds,
    judge,
    schedule,
    undrained,
)
from scripts.chaos.fraud import FraudWorkload
from scripts.chaos.orders import OrdersWorkload
from scripts.chaos.triage import TriageWorkload

WORKLOADS: dict[str, Callable[[random.Random, Options], Workload]] = {
    "orders": lambda rng, options: OrdersWorkload(rng, options.orders, options.duration,
                                                  options.step_timeout),
    "fraud": lambda rng, options: FraudWorkload(rng, options.payments, options.duration),
    "triage": lambda rng, options: TriageWorkload(rng, options.tickets, options.duration),
}
"""Agent name -> how to make its workload for a run; each agent registers its own."""


# ====================================================================== the run

@dataclass
class RunReport:
    options: Options
    schedule: list[FaultEvent]
    reports: list[Report]
    platform: list[Verdict]
    figures: dict[str, str]
    latencies: dict[str, list[float]]
    seconds: dict[str, float]
    injected: dict[str, int]
    """Fault kind -> how many times the schedule applied it."""
    drained: bool

    @property
    def verdicts(self) -> list[Verdict]:
        return [verdict for report in self.reports for verdict in report.verdicts] + \
            self.platform

    @property
    def held(self) -> bool:
        return all(verdict.held for verdict in self.verdicts)


def sweepers(workloads: Sequence[Workload]) -> list[str]:
    return [name for workload in workloads for name in workload.sweepers]


def sinks(workloads: Sequence[Workload]) -> set[str]:
    return {entity for workload in workloads for entity in workload.sinks}


async def drain(cloud: ChaosCloud, workloads: Sequence[Workload], seconds: float,
                say: Say) -> bool:
    """Wait until every workload is done and every queue is empty but the workloads' sinks
    (the sweepers run each pass, as their timers would); False if that does not happen
    within `seconds`."""
    give_up = time.monotonic() + seconds
    while True:
        await cloud.run_sweepers(sweepers(workloads))
        left = [await workload.unfinished(cloud) for workload in workloads]
        held = await asyncio.to_thread(undrained, cloud, sinks(workloads))
        if not any(left) and not held:
            return True
        say(f"draining: {sum(left)} unfinished, queues holding "
            f"{sum(sum(states.values()) for states in held.values())} message(s)")
        if time.monotonic() > give_up:
            return False
        await asyncio.sleep(2.0)


async def collect_platform(cloud: ChaosCloud, workloads: Sequence[Workload],
                           promised: list[Promise]) -> PlatformEvidence:
    letters = []
    for letter in await asyncio.to_thread(list_dead_letters, cloud.ops, cloud.catalogue):
        saga_id = None
        try:
            data = json.loads(letter.body or b"").get("data")
            saga_id = data.get("sagaId") if isinstance(data, dict) else None
        except (ValueError, AttributeError):
            pass
        letters.append(Letter(letter.entity, letter.message_id, letter.reason,
                              letter.description, saga_id))
    await cloud.run_sweepers(sweepers(workloads))
    pending = [f"{row.table}: {row.row.partition_key} -> {row.row.destination}"
               for row in await asyncio.to_thread(pending_rows, cloud.ops)]
    return PlatformEvidence(letters, promised, pending,
                            await asyncio.to_thread(undrained, cloud, sinks(workloads)))


async def run_chaos(options: Options, say: Say = demo.quiet) -> RunReport:
    # One stream of draws per workload and one for the faults: a seed names a run, and a
    # workload's mix does not change when another's count does.
    workloads = [make(random.Random(f"{options.seed}/{name}"), options)
                 for name, make in WORKLOADS.items()]
    events = schedule(random.Random(f"{options.seed}/faults"), options.faults,
                      options.duration)
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))  # kept: the host's log is evidence
    async with chaos_cloud(options.seed, workdir, options.step_timeout) as cloud:
        say("preparing the workloads")
        for workload in workloads:
            await workload.prepare(cloud)
        faults = FaultRunner(cloud, say)
        started = time.monotonic()
        await asyncio.gather(faults.run(events, started),
                             *(workload.drive(cloud, started, say) for workload in workloads))
        faults.calm()
        loaded = time.monotonic()
        drained = await drain(cloud, workloads, options.drain_seconds, say)
        if drained:
            for workload in workloads:
                await workload.close(cloud)
            drained = await drain(cloud, workloads, options.drain_seconds, say)
        settled = time.monotonic()
        say("reading the evidence")
        reports = [await workload.collect(cloud) for workload in workloads]
        promised = [promise for report in reports for promise in report.promised]
        platform = judge(PLATFORM_INVARIANTS, await collect_platform(cloud, workloads,
                                                                      promised))
        invocations = cloud.host.invocations()
        absorbed = cloud.host.redeliveries_absorbed()
        storage_hits = cloud.proxy.faults.injected()
        storage_requests = cloud.proxy.faults.requests()
        duplicates = faults.broker_duplicates()
        kills = cloud.host.kills
    figures = {
        "faults injected by kind": ", ".join(
            f"{kind}: {count}" for kind, count in sorted(faults.applied.items())) or "none",
        "storage requests hit": ", ".join(
            f"{kind}: {count}" for kind, count in sorted(storage_hits.items())) or "none",
        "storage requests proxied": ", ".join(
            f"{service}: {count}" for service, count in sorted(storage_requests.items())),
        "host kills (SIGKILL) and restarts": str(kills),
        "broker duplicates made": ", ".join(
            f"{kind}: {count}" for kind, count in duplicates.items()),
        "messages handled again and absorbed (inbox)": str(absorbed),
        "host invocations": ", ".join(
            f"{name} {ok} {count}" for (name, ok), count in sorted(invocations.items())),
        "failed invocations (redelivered)": str(sum(
            count for (_, outcome), count in invocations.items() if outcome == "Failed")),
        "drained": "yes" if drained else f"no, not within {options.drain_seconds:.0f}s",
        "host log": str(workdir / "host.log"),
    }
    for report in reports:
        figures.update(report.figures)
    latencies = {label: values for report in reports for label, values in
                 report.latencies.items()}
    return RunReport(options, events, reports, platform, figures, latencies, {
        "load": loaded - started, "drain": settled - loaded, "total": time.monotonic() - began},
        dict(faults.applied), drained)


# ====================================================================== the report

def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile (None without values)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_text(values: Sequence[float]) -> str:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    if p50 is None or p95 is None:
        return "no samples"
    return f"p50 {p50:.2f}s, p95 {p95:.2f}s, max {max(values):.2f}s ({len(values)} samples)"


def as_json(run: RunReport) -> dict[str, Any]:
    return {
        "options": asdict(run.options),
        "held": run.held,
        "seconds": {name: round(value, 1) for name, value in run.seconds.items()},
        "schedule": [asdict(event) for event in run.schedule],
        "figures": run.figures,
        "latencies": {label: {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
                              "samples": len(values)}
                      for label, values in run.latencies.items()},
        "invariants": [{"invariant": verdict.invariant, "held": verdict.held,
                        "violations": [asdict(v) for v in verdict.violations]}
                       for verdict in run.verdicts],
    }


def print_report(run: RunReport, console: Console, shown: int = 5) -> None:
    figures = Table(title="chaos run: figures", show_header=False)
    figures.add_column(style="bold")
    figures.add_column()
    options = run.options
    figures.add_row("seed, orders, payments, tickets, duration, step deadline",
                    f"{options.seed}, {options.orders}, {options.payments}, {options.tickets}, "
                    f"{options.duration:g}s, {options.step_timeout:g}s")
    figures.add_row("fault kinds", ", ".join(options.faults) or "none")
    for label, value in run.figures.items():
        figures.add_row(label, value)
    for label, values in run.latencies.items():
        figures.add_row(label, latency_text(values))
    figures.add_row("wall time", ", ".join(f"{name} {value:.1f}s"
                                           for name, value in run.seconds.items()))
    console.print(figures)
    verdicts = Table(title="invariants (from what the services hold)", show_header=True,
                     header_style="bold")
    for column in ("invariant", "verdict", "violations (ids: what was seen)"):
        verdicts.add_column(column)
    for verdict in run.verdicts:
        lines = [f"{', '.join(v.ids)}: {v.seen}" for v in verdict.violations[:shown]]
        if len(verdict.violations) > shown:
            lines.append(f"... and {len(verdict.violations) - shown} more")
        verdicts.add_row(verdict.invariant, "[green]holds[/]" if verdict.held else
                         f"[red]{len(verdict.violations)} violation(s)[/]", "\n".join(lines))
    console.print(verdicts)
    broken = sum(not verdict.held for verdict in run.verdicts)
    console.rule("[green]every invariant holds[/]" if not broken else
                 f"[red]{broken} invariant(s) broken[/]")


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@cli.command()
def main(
    seed: Annotated[int, typer.Option(help="Seeds the workload and the fault schedule.")] = 1,
    orders: Annotated[int, typer.Option(help="How many orders (Idempotency-Keys).")] = 500,
    payments: Annotated[int, typer.Option(help="How many direct card payments on the payment "
                                          "stream (fraud; the orders' charges come too).")
                        ] = 300,
    tickets: Annotated[int, typer.Option(help="How many helpdesk tickets (triage; each with "
                                         "its updates).")] = 100,
    duration: Annotated[float, typer.Option(help="Seconds of load (and of faults).")] = 250.0,
    faults: Annotated[str, typer.Option(help="all, none, or a comma list of kinds or layers "
                                        f"({', '.join(LAYERS)}).")] = "all",
    drain: Annotated[float, typer.Option(help="Seconds allowed to drain after the load.")
                     ] = 240.0,
    step_timeout: Annotated[float, typer.Option(help="The orders saga's step deadline, "
                                                "seconds.")] = float(demo.STEP_TIMEOUT_SECONDS),
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")
                           ] = False,
) -> None:
    """Run a seeded chaos scenario on the local cloud; exit 0 only if every invariant holds."""
    options = Options(seed, orders, payments, tickets, duration, tuple(fault_kinds(faults)),
                      drain, step_timeout)
    console = Console(width=None if sys.stdout.isatty() else 160,
                      stderr=json_output)
    logging.basicConfig(level=logging.ERROR)
    with console.status("starting Azurite, the storage proxy, devstack and the host") as status:
        run = asyncio.run(run_chaos(options, lambda text: status.update(text)))
    if json_output:
        print(json.dumps(as_json(run), indent=2, default=str))
    else:
        print_report(run, console)
    raise typer.Exit(0 if run.held else 1)


