"""Circuit breaker benchmark: what the shared breaker costs, side by side with its baselines.

1. Overhead per call of a closed breaker (state shared through an Azurite table, and
   local-only) beside a bare call of the same function.
2. Storage requests per 1,000 calls per instance: two instances (own clients, own caches, one
   table) calling as fast as they can, then paced, for `--seconds` each; beside a naive shared
   breaker that reads and ETag-writes the entity on every call.
3. Time to fail: a call to devstack's model endpoint that hangs until the openai SDK's own
   timeout (`--timeout`), beside a call refused by the open breaker (target: under 50 ms).

    python -m bench.breaker_bench [--calls 200000] [--seconds 3] [--timeout 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/breaker_bench.py` works too

from agents.backbone.breaker import BreakerOptions, CircuitBreaker  # noqa: E402
from agents.backbone.tables import RequestCounter, state_table  # noqa: E402
from agents.reasoning import (  # noqa: E402
    Reasoner,
    ReasonerOpen,
    ReasonerUnavailable,
    Task,
    azure_openai,
)
from bench.server_process import print_table  # noqa: E402
from devstack.azurite import Azurite  # noqa: E402
from devstack.llm import LocalModelServer  # noqa: E402

FAIL_FAST_TARGET_MS = 50.0
TASK = Task("bench", "Answer.", {"type": "object", "properties": {"ok": {"type": "boolean"}},
                                 "required": ["ok"], "additionalProperties": False})


def noop() -> None:
    return None


def per_call_us(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def table_for(connection: str, name: str, counter: RequestCounter) -> TableClient:
    service = TableServiceClient.from_connection_string(connection,
                                                        raw_request_hook=counter.hook)
    return state_table(service, name)


def overhead(connection: str, table_name: str, calls: int) -> list[list[str]]:
    shared = CircuitBreaker("overhead", table=table_for(connection, table_name,
                                                        RequestCounter()))
    local = CircuitBreaker("overhead-local")
    bare = per_call_us(noop, calls)
    rows = [["bare call (baseline)", f"{bare:.2f}", "-"]]
    for label, breaker in (("ours, closed, shared through Table", shared),
                           ("ours, closed, local-only", local)):
        guarded = per_call_us(lambda b=breaker: b.call(noop), calls)  # type: ignore[misc]
        rows.append([label, f"{guarded:.2f}", f"+{guarded - bare:.2f}"])
    return rows


def naive_call(table: TableClient, row: str) -> None:
    """The baseline: every call reads the shared entity and writes its count back."""
    while True:
        try:
            entity = table.get_entity("naive", row)
        except ResourceNotFoundError:
            table.upsert_entity({"PartitionKey": "naive", "RowKey": row, "Calls": 0})
            continue
        entity["Calls"] = int(entity["Calls"]) + 1
        try:
            table.update_entity(entity, mode=UpdateMode.REPLACE,
                                etag=entity.metadata["etag"],
                                match_condition=MatchConditions.IfNotModified)
            return
        except ResourceModifiedError:
            continue


def storage_per_instance(connection: str, table_name: str, seconds: float, pace: float | None,
                         naive: bool) -> tuple[int, int]:
    """Two instances for `seconds`; returns (calls, storage requests) of the first one."""
    name = f"load-{uuid.uuid4().hex[:6]}"
    counters = [RequestCounter(), RequestCounter()]
    tables = [table_for(connection, table_name, counter) for counter in counters]
    breakers = [CircuitBreaker(name, table=table) for table in tables]
    calls = [0, 0]
    start = threading.Barrier(2)

    def run(index: int) -> None:
        start.wait()
        began = time.perf_counter()
        deadline = began + seconds
        while (now := time.perf_counter()) < deadline:
            if naive:
                naive_call(tables[index], name)
            else:
                breakers[index].call(noop)
            calls[index] += 1
            if pace is not None:
                time.sleep(max(0.0, began + calls[index] / pace - time.perf_counter()))
            del now

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    before = [counter.total for counter in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls[0], counters[0].total - before[0]


def storage(connection: str, table_name: str, seconds: float) -> list[list[str]]:
    rows = []
    for label, pace, naive in (("ours, as fast as it goes", None, False),
                               ("ours, paced at 200 calls/s", 200.0, False),
                               ("baseline: naive shared (read + write per call)", 200.0, True)):
        calls, requests = storage_per_instance(connection, table_name, seconds, pace, naive)
        rows.append([label, f"{calls:,}", f"{requests:,}", f"{requests / seconds:.1f}",
                     f"{requests / calls * 1000:.1f}"])
    return rows


def fail_time(connection: str, table_name: str, timeout: float) -> tuple[list[list[str]], bool]:
    with LocalModelServer(port=0) as server:
        model = azure_openai(server.base_url, "chat", api_version="2024-10-21",
                             timeout=timeout, max_retries=0, token_provider=lambda: "bench")
        breaker = CircuitBreaker("fail-fast", table=table_for(connection, table_name,
                                                              RequestCounter()),
                                 options=BreakerOptions(failure_ratio=0.5,
                                                        minimum_throughput=2,
                                                        break_duration=600.0))
        reasoner = Reasoner(model, breaker=breaker)
        reasoner.decide(TASK, {"warm": True})
        server.faults.hang(deployment="chat", times=1)
        started = time.perf_counter()
        with contextlib.suppress(ReasonerUnavailable):
            reasoner.decide(TASK, {"x": 1})
        sdk_timeout_ms = (time.perf_counter() - started) * 1000
        refused = []
        for attempt in range(1000):
            started = time.perf_counter()
            try:
                reasoner.decide(TASK, {"x": attempt})
            except ReasonerOpen:
                refused.append((time.perf_counter() - started) * 1000)
        sent = server.requests["chat"]
    median = statistics.median(refused)
    p99 = statistics.quantiles(refused, n=100)[98]
    rows = [
        [f"hang, SDK timeout {timeout:g} s, max_retries=0 (baseline)", f"{sdk_timeout_ms:.1f}",
         "-", "1 call"],
        ["ours: refused by the open breaker", f"{median:.4f}", f"{p99:.4f}",
         f"{len(refused)} calls, {sent - 2} reached the model"],
    ]
    return rows, p99 < FAIL_FAST_TARGET_MS and len(refused) == 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=2.0, help="the SDK's timeout (s)")
    args = parser.parse_args(argv)
    with Azurite() as azurite:
        table_name = f"breakers{uuid.uuid4().hex[:8]}"
        connection = azurite.connection_string
        print(f"\nCircuit breaker: overhead per call, {args.calls:,} calls of a no-op")
        print_table(["call", "us/call", "vs bare"], overhead(connection, table_name, args.calls))
        print(f"\nCircuit breaker: storage requests of one of 2 instances on one breaker, "
              f"{args.seconds:g} s each (sync_interval 1 s)")
        print_table(["workload", "calls", "storage req", "req/s", "req per 1,000 calls"],
                    storage(connection, table_name, args.seconds))
        print(f"\nCircuit breaker: time to fail (target: open < {FAIL_FAST_TARGET_MS:g} ms)")
        rows, met = fail_time(connection, table_name, args.timeout)
        print_table(["call", "median ms", "p99 ms", "n"], rows)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
