"""Rate limiter benchmark: two instances hammer one caller key; how close do they stay to
the configured rate together, and what does each request cost in storage?

Two processes (two "host instances": separate clients, separate caches) share one Azurite
table and call `RateLimiter.admit` for one key as fast as a storm would (up to `--pace`
calls per second each) for `--seconds`. Side by side in the same run, the common way: a
per-instance pyrate-limiter GCRA in memory (Dapr's middleware and most samples limit per
instance), which admits the configured rate once per instance.

Expected admissions for a window of D seconds: burst + rate x D. Storage requests are
counted with the SDK's public `raw_request_hook`.

    python -m bench.ratelimit_bench [--seconds 10] [--rate 50] [--burst 10]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from azure.data.tables import TableServiceClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/ratelimit_bench.py` works too

from agents.backbone.ratelimit import RateLimiter, RatePolicy  # noqa: E402
from agents.backbone.tables import RequestCounter, state_table  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402

KEY = "storm"


@dataclass(frozen=True)
class Tally:
    admitted: int
    refused: int
    requests: int


def _hammer_shared(connection: str, table: str, policy: RatePolicy, start: float,
                   seconds: float, pace: float) -> Tally:
    counter = RequestCounter()
    client = TableServiceClient.from_connection_string(connection,
                                                       raw_request_hook=counter.hook)
    limiter = RateLimiter(client.get_table_client(table), policy)
    return _hammer(limiter.admit, counter, start, seconds, pace)


def _hammer_local(policy: RatePolicy, start: float, seconds: float, pace: float) -> Tally:
    from pyrate_limiter import GCRA, Limiter, Rate, StateBucket

    rate = Rate(policy.limit, int(policy.window.total_seconds() * 1000), policy.capacity)
    limiter = Limiter(StateBucket([rate], GCRA()))
    return _hammer(lambda key: bool(limiter.try_acquire(key, blocking=False)),
                   RequestCounter(), start, seconds, pace)


def _hammer(admit: Callable[[str], object], counter: RequestCounter, start: float,
            seconds: float, pace: float) -> Tally:
    while time.time() < start:
        time.sleep(0.001)
    admitted = refused = 0
    period = 1.0 / pace
    next_at = time.monotonic()
    end = start + seconds
    while time.time() < end:
        answer = admit(KEY)
        if getattr(answer, "allowed", answer):
            admitted += 1
        else:
            refused += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    return Tally(admitted, refused, counter.total)


def _row(name: str, tallies: list[Tally], policy: RatePolicy, seconds: float) -> list[str]:
    admitted = sum(t.admitted for t in tallies)
    refused = sum(t.refused for t in tallies)
    requests = sum(t.requests for t in tallies)
    expected = policy.capacity + policy.limit / policy.window.total_seconds() * seconds
    return [name, str(admitted), f"{expected:.0f}", f"{(admitted - expected) / expected:+.1%}",
            f"{admitted / seconds:.1f}", str(refused),
            f"{requests / max(1, admitted):.2f}" if requests else "-",
            f"{requests / max(1, admitted + refused):.3f}" if requests else "-"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=50, help="admitted per second per key")
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--pace", type=float, default=1000.0,
                        help="calls per second per instance")
    args = parser.parse_args(argv)
    policy = RatePolicy("bench", args.rate, timedelta(seconds=1), args.burst)
    context = multiprocessing.get_context("spawn")
    with Azurite() as azurite:
        table = f"ratelimit{uuid.uuid4().hex[:8]}"
        state_table(TableServiceClient.from_connection_string(azurite.connection_string), table)
        with context.Pool(2) as pool:
            start = time.time() + 3.0  # both processes imported and connected by then
            shared = pool.starmap(_hammer_shared, [
                (azurite.connection_string, table, policy, start, args.seconds, args.pace)] * 2)
            start = time.time() + 1.0
            local = pool.starmap(_hammer_local,
                                 [(policy, start, args.seconds, args.pace)] * 2)
    header = ["limiter (2 instances, 1 key)", "admitted", "expected", "error", "admitted/s",
              "refused", "storage req/admitted", "storage req/call"]
    rows = [header, _row("ours: GCRA shared through Table", shared, policy, args.seconds),
            _row("baseline: GCRA per instance", local, policy, args.seconds)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\nRate limiter: {args.rate}/s burst {args.burst}, {args.seconds:g} s, "
          f"2 instances x up to {args.pace:g} calls/s")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
