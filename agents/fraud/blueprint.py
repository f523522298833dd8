"""The fraud agent's functions: the Event Hubs trigger on the payment stream (a batch per
invocation) and the outbox timers. Nothing here scores; it turns the trigger's events into a
`Batch`, calls the handler, and decides what a failure means (README: batches, checkpoints).

The agent is what `compose` returns, called on the first invocation (never at import).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, List  # noqa: UP035 (the worker needs it, below)

import azure.functions as func

from agents.backbone.lazy import Lazy
from agents.fraud import entities

if TYPE_CHECKING:  # the handlers load the Tables SDK and jsonschema: first invocation only
    from agents.backbone.publishers import Publisher
    from agents.fraud.handlers import Batch, FraudAgent

log = logging.getLogger(__name__)

# The host retries the whole batch; after the last retry the batch is parked (the host
# checkpoints past it either way). Strings, as the decorator takes them.
MAX_RETRIES = "5"
RETRY_MIN = "00:00:01"
RETRY_MAX = "00:00:30"
SWEEP_SCHEDULE = "*/30 * * * * *"
RETENTION_SCHEDULE = "0 45 3 * * *"
SWEEP_AFTER = timedelta(seconds=30)
RETENTION = timedelta(days=2)


def batch_of(events: Sequence[func.EventHubEvent]) -> Batch:
    """The partition and each event's body, properties and position from the trigger's
    metadata (cardinality many: `PropertiesArray` holds one entry per event)."""
    from agents.fraud.handlers import Batch, RawEvent

    if not events:
        return Batch("", [])
    metadata: Mapping[str, Any] = events[0].metadata or {}
    partition = str(metadata["PartitionContext"]["PartitionId"])
    properties: Sequence[Mapping[str, Any]] = metadata.get("PropertiesArray") or [
        {} for _ in events]
    return Batch(partition, [
        RawEvent(event.get_body(), props or {}, int(event.sequence_number or 0),
                 str(event.offset))
        for event, props in zip(events, properties, strict=True)])


def on_payments(events: Sequence[func.EventHubEvent], context: func.Context,
                agent: Callable[[], FraudAgent], parking: Callable[[], Publisher]) -> None:
    """Score the batch. A failure raises so the retry policy retries the batch; on the last
    retry the batch is parked instead, because the checkpoint moves past it either way. If
    the agent itself cannot be composed, `parking()` (composed on its own) parks it."""
    from agents.fraud.handlers import park_batch, park_uncomposed, score_batch

    batch = batch_of(events)
    if not batch.events:
        return
    try:
        fraud = agent()
    except Exception as error:
        if _retries_remain(context):
            raise
        parked = park_uncomposed(parking(), batch, error)
        log.error("partition %s: the fraud agent could not be composed (%s); retries "
                  "exhausted, parked %d events on %s", batch.partition_id, error, len(parked),
                  entities.POISON_QUEUE)
        return
    try:
        result = score_batch(fraud, batch)
    except Exception as error:
        if _retries_remain(context):
            raise
        parked = park_batch(fraud, batch, error)
        log.error("partition %s: retries exhausted (%s); parked %d events on %s",
                  batch.partition_id, error, len(parked), entities.POISON_QUEUE)
        return
    log.info("partition %s: %d scored, %d alerts, %d parked, %d already applied, "
             "%d transactions", batch.partition_id, len(result.verdicts), len(result.alerts),
             len(result.parked), result.already_applied, result.transactions)


def _retries_remain(context: func.Context) -> bool:
    retry = context.retry_context
    return retry.max_retry_count < 0 or retry.retry_count < retry.max_retry_count


def blueprint(compose: Callable[[], FraudAgent], compose_parking: Callable[[], Publisher]
              ) -> func.Blueprint:
    """The fraud functions over one agent, `compose()`d on the first invocation;
    `compose_parking()` gives what parks a batch while `compose` keeps failing."""
    agent = Lazy(compose)
    parking = Lazy(compose_parking)
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("fraud_score_payments")
    @bp.event_hub_message_trigger(arg_name="events", event_hub_name=entities.PAYMENTS_HUB,
                                  connection=entities.EVENTHUBS_CONNECTION,
                                  consumer_group=entities.CONSUMER_GROUP, cardinality="many")
    @bp.retry(strategy="exponential_backoff", max_retry_count=MAX_RETRIES,
              minimum_interval=RETRY_MIN, maximum_interval=RETRY_MAX)
    # typing.List: the Python worker refuses `list[...]` ("invalid non-type annotation").
    def fraud_score_payments(events: List[func.EventHubEvent],  # noqa: UP006
                             context: func.Context) -> None:
        on_payments(events, context, agent.get, parking.get)

    @bp.function_name("fraud_outbox_sweeper")
    @bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE)
    def fraud_outbox_sweeper(timer: func.TimerRequest) -> None:
        swept = agent.get().relay.sweep(older_than=SWEEP_AFTER)
        if swept:
            log.warning("sweeper published %d stale fraud alerts", len(swept))

    @bp.function_name("fraud_retention")
    @bp.timer_trigger(arg_name="timer", schedule=RETENTION_SCHEDULE)
    def fraud_retention(timer: func.TimerRequest) -> None:
        log.info("fraud retention: %s", agent.get().relay.purge(older_than=RETENTION))

    return bp
