"""Tracing and metrics through the OpenTelemetry API: one trace per conversation, across brokers.

Every handled message runs in a CONSUMER span that continues the envelope's `traceparent`
(`MessageProcessor` opens it); every outbox row written inside that span carries the span's
context (`stamp`), and the publishers put it on the wire (`wire_properties`), so the next
function's span is its child. Product code uses the API only: without a configured SDK every
call is a no-op and envelopes keep the trace context `Envelope.follow` derived.

`configure(env)` installs the SDK once, by setting: Azure Monitor when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set, else `OTEL_EXPORTER=console|otlp|none`.
The API itself loads on first use, never at import (cold start).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
    from opentelemetry.trace import Span, Tracer

    from agents.backbone.envelope import Envelope

NAME = "agents.backbone"
TRACEPARENT = "traceparent"
DIAGNOSTIC_ID = "Diagnostic-Id"  # what the Azure SDKs and the Functions host read on Service Bus

# Metric names (README "Telemetry" lists them with their attributes).
HANDLED = "backbone.messages.handled"
DUPLICATES = "backbone.messages.duplicate"
DEAD_LETTERED = "backbone.messages.dead_lettered"
RESCHEDULED = "backbone.messages.rescheduled"
BREAKER_STATE = "backbone.breaker.state"
RATE_LIMIT_REFUSED = "backbone.ratelimit.refused"
OUTBOX_DISPATCH_AGE = "backbone.outbox.dispatch_age"
OUTBOX_PENDING_AGE = "backbone.outbox.oldest_pending_age"

EXPORTERS = ("console", "otlp", "none")

log = logging.getLogger(__name__)
_configured = threading.Lock()
_done = False
_pending_ages: dict[str, float] = {}
_observed: set[str] = set()
_observed_lock = threading.Lock()


@cache
def tracer() -> Tracer:
    from opentelemetry import trace

    return trace.get_tracer(NAME)


@cache
def meter() -> Meter:
    from opentelemetry import metrics

    return metrics.get_meter(NAME)


@contextmanager
def handling(function: str, event: Envelope | None) -> Iterator[Span]:
    """The span of one unit of work: CONSUMER, child of `event.traceparent`, for a message;
    INTERNAL, child of the current context, for work with no incoming event (an HTTP edge)."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    attributes: dict[str, str] = {"backbone.function": function}
    if event is None:
        with tracer().start_as_current_span(function, kind=SpanKind.INTERNAL,
                                            attributes=attributes) as span:
            yield span
        return
    parent = (TraceContextTextMapPropagator().extract({TRACEPARENT: event.traceparent})
              if event.traceparent else None)
    attributes.update({
        "messaging.operation.type": "process", "messaging.message.id": event.id,
        "cloudevents.event_id": event.id, "cloudevents.event_type": event.type,
        "cloudevents.event_source": event.source,
    })
    if event.correlationid:
        attributes["messaging.message.conversation_id"] = event.correlationid
    if event.causationid:
        attributes["backbone.causation_id"] = event.causationid
    with tracer().start_as_current_span(f"process {event.type}", context=parent,
                                        kind=SpanKind.CONSUMER, attributes=attributes) as span:
        yield span


def current_traceparent() -> str | None:
    """The W3C traceparent of the span in progress, or None when nothing is being recorded."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    span = trace.get_current_span()
    if not span.is_recording() or not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def stamp(envelope: Envelope) -> Envelope:
    """`envelope` carrying the current span as its parent (unchanged when none records)."""
    from dataclasses import replace

    traceparent = current_traceparent()
    return envelope if traceparent is None else replace(envelope, traceparent=traceparent)


def wire_properties(envelope: Envelope) -> dict[str, str]:
    """The trace context as the application properties Service Bus and Event Hubs consumers
    (the Azure SDKs, the Functions host) read: `Diagnostic-Id` and `traceparent`."""
    if not envelope.traceparent:
        return {}
    return {DIAGNOSTIC_ID: envelope.traceparent, TRACEPARENT: envelope.traceparent}


def trace_id(traceparent: object) -> str | None:
    """The 32-hex trace id of a W3C traceparent, None when it is not one."""
    parts = traceparent.decode() if isinstance(traceparent, bytes) else str(traceparent or "")
    fields = parts.split("-")
    return fields[1] if len(fields) == 4 and len(fields[1]) == 32 else None


# ---------------------------------------------------------------------------- metrics


@cache
def _counter(name: str, unit: str, description: str) -> Counter:
    return meter().create_counter(name, unit=unit, description=description)


@cache
def _histogram(name: str, unit: str, description: str) -> Histogram:
    return meter().create_histogram(name, unit=unit, description=description)


def count_outcome(function: str, *, duplicate: bool, dead_lettered: bool) -> None:
    """One handled message of `function`: handled, a duplicate the inbox absorbed, or handled
    and dead-lettered by decision."""
    attributes = {"backbone.function": function}
    if duplicate:
        _counter(DUPLICATES, "{message}", "redeliveries the inbox absorbed").add(1, attributes)
    else:
        _counter(HANDLED, "{message}", "messages handled once").add(1, attributes)
    if dead_lettered:
        count_dead_letter(function, "decided")


def count_dead_letter(function: str, reason: str) -> None:
    _counter(DEAD_LETTERED, "{message}", "messages dead-lettered").add(
        1, {"backbone.function": function, "backbone.reason": reason})


def count_rescheduled(entity: str, how: str) -> None:
    _counter(RESCHEDULED, "{message}", "messages put back for later (retry-later)").add(
        1, {"messaging.destination.name": entity, "backbone.how": how})


def count_refusal(route: str) -> None:
    _counter(RATE_LIMIT_REFUSED, "{request}", "requests refused by the edge rate limit").add(
        1, {"backbone.route": route})


def record_dispatch_age(destination: str, seconds: float) -> None:
    """How long a row waited in the outbox before it was sent."""
    _histogram(OUTBOX_DISPATCH_AGE, "s", "outbox row age when published").record(
        seconds, {"messaging.destination.name": destination})


def record_pending_age(table: str, seconds: float) -> None:
    """The oldest pending row the sweeper found (0 when none: the outbox is drained)."""
    _pending_ages[table] = seconds
    _observe_once(OUTBOX_PENDING_AGE, "s", "age of the oldest pending outbox row",
                  lambda: [(age, {"backbone.table": name}) for name, age in _pending_ages.items()])


def _observe_once(name: str, unit: str, description: str,
                  values: Callable[[], Iterable[tuple[float, Mapping[str, str]]]]) -> None:
    """Register an observable gauge the first time it has something to report."""
    with _observed_lock:
        if name in _observed:
            return
        _observed.add(name)

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(value, dict(attributes)) for value, attributes in values()]

    meter().create_observable_gauge(name, callbacks=[callback], unit=unit,
                                    description=description)


def observe_breakers(states: Callable[[], Iterable[tuple[str, int]]]) -> None:
    """Report each breaker's state (0 closed, 1 half-open, 2 open) as an observable gauge."""
    _observe_once(BREAKER_STATE, "1", "circuit breaker state: 0 closed, 1 half-open, 2 open",
                  lambda: [(state, {"backbone.breaker": name}) for name, state in states()])


# ---------------------------------------------------------------------------- the SDK


def configure(env: Mapping[str, str]) -> str:
    """Install the SDK once per process (the composition root calls it on first invocation);
    returns what it chose: `azure_monitor`, `console`, `otlp`, `none`, or `already`."""
    global _done
    with _configured:
        if _done:
            return "already"
        _done = True
        if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            from azure.monitor.opentelemetry import configure_azure_monitor

            if "Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", ""):
                from azure.identity import DefaultAzureCredential  # local auth is off

                configure_azure_monitor(credential=DefaultAzureCredential())
            else:
                configure_azure_monitor()  # reads the connection string and OTEL_* itself
            return "azure_monitor"
        exporter = (env.get("OTEL_EXPORTER") or "none").strip().lower()
        if exporter not in EXPORTERS:
            log.warning("OTEL_EXPORTER=%r is not one of %s: telemetry is not exported",
                        exporter, "|".join(EXPORTERS))
            return "none"
        if exporter != "none":
            _install_sdk(exporter)
        return exporter


def _install_sdk(exporter: str) -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    spans: SpanExporter
    readings: MetricExporter
    if exporter == "otlp":  # the standard OTEL_EXPORTER_OTLP_* settings choose the endpoint
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        spans, readings = OTLPSpanExporter(), OTLPMetricExporter()
    else:
        spans, readings = ConsoleSpanExporter(), ConsoleMetricExporter()
    resource = Resource.create()  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(readings)]))
