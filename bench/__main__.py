"""Run every benchmark and print figures side by side with their baselines."""

import sys
from collections.abc import Callable

from bench import (
    breaker_bench,
    cold_start,
    devstack_bench,
    eventhubs_bench,
    fraud_bench,
    orders_bench,
    publish_bench,
    ratelimit_bench,
)

# One line per benchmark module: its `main` prints its figures and returns an exit code.
BENCHMARKS: list[Callable[[], int | None]] = [
    orders_bench.main,
    devstack_bench.main,
    eventhubs_bench.main,
    ratelimit_bench.main,
    breaker_bench.main,
    fraud_bench.main,
    publish_bench.main,
    cold_start.main,
]

if __name__ == "__main__":
    sys.exit(max((run() or 0) for run in BENCHMARKS))
