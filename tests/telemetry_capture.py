"""The OpenTelemetry SDK with an in-memory span exporter and metric reader, installed once per
test process (the global providers can be set only once)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@cache
def installed() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def finished_spans() -> list[ReadableSpan]:
    return list(installed()[0].get_finished_spans())


def metric_value(name: str, attributes: Mapping[str, str]) -> float:
    """The current value of metric `name` summed over points whose attributes include
    `attributes` (0 when it has none yet)."""
    data = installed()[1].get_metrics_data()
    total = 0.0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    found = dict(point.attributes or {})
                    if all(found.get(key) == value for key, value in attributes.items()):
                        total += getattr(point, "value", None) or getattr(point, "sum", 0)
    return total
