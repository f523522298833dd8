"""`make chaos`: a seeded, bounded chaos run on the local cloud, judged by invariants.

Starts Azurite behind devstack's storage fault proxy, devstack's Service Bus and Event Hubs, a
local Event Grid, devstack's local model endpoint, and devstack's Functions host running
`function_app.py` as a subprocess (so it can be killed with SIGKILL and restarted). Each
registered workload (`run.WORKLOADS`: orders, fraud, triage; one module each) drives its agent
over real HTTP, AMQP and Event Grid while a seeded fault schedule hits every layer: the broker
(devstack's fault API), storage (the proxy), the process (the host killed mid-run), the
participants (simulator modes) and the LLM (the local model's fault API). Then the faults
stop, the run drains, and the invariants are checked from what the services hold - tables,
queues, dead-letter queues, the payment stream - never from the app's own counters. The
report is a table of figures and the invariants; the exit code is 0 only if every invariant
holds.

    python -m scripts.chaos --seed 7 --orders 500 --payments 300 --tickets 100 --faults all
"""

from scripts.chaos.core import (
    ALL_FAULTS,
    DEAD_LETTER_REASONS,
    DEAD_LETTERS_EXACT,
    LAYERS,
    PLATFORM_INVARIANTS,
    Invariant,
    Letter,
    Options,
    PlatformEvidence,
    Promise,
    Verdict,
    Violation,
    fault_kinds,
    judge,
    schedule,
)
from scripts.chaos.fraud import FRAUD_INVARIANTS, FraudEvidence
from scripts.chaos.orders import ORDERS_INVARIANTS, Movements, OrdersEvidence, SagaSeen
from scripts.chaos.run import WORKLOADS, RunReport, run_chaos
from scripts.chaos.triage import TRIAGE_INVARIANTS, TriageEvidence

__all__ = [
    "ALL_FAULTS", "DEAD_LETTERS_EXACT", "DEAD_LETTER_REASONS", "FRAUD_INVARIANTS", "LAYERS",
    "ORDERS_INVARIANTS", "PLATFORM_INVARIANTS", "TRIAGE_INVARIANTS", "WORKLOADS",
    "FraudEvidence", "Invariant", "Letter", "Movements", "Options", "OrdersEvidence",
    "PlatformEvidence", "Promise", "RunReport", "SagaSeen", "TriageEvidence", "Verdict",
    "Violation", "fault_kinds", "judge", "run_chaos", "schedule",
]
