"""`telemetry.configure`: the exporter is chosen by setting (a fresh interpreter each, since
the SDK's global providers can be set once per process)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from agents.backbone import telemetry

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import sys
from opentelemetry import trace
from agents.backbone import telemetry
print(telemetry.configure({"OTEL_EXPORTER": sys.argv[1]}))
print(telemetry.configure({"OTEL_EXPORTER": sys.argv[1]}))
with telemetry.handling("orders-place", None):
    pass
shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
if shutdown:
    shutdown()
"""


def run(exporter: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, exporter], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.splitlines()


def test_console_prints_each_span_and_is_configured_once() -> None:
    lines = run("console")
    assert lines[:2] == ["console", "already"]
    assert any('"name": "orders-place"' in line for line in lines)


def test_none_exports_nothing() -> None:
    assert run("none") == ["none", "already"]


def test_an_unknown_exporter_is_a_warning_naming_it(caplog, monkeypatch) -> None:
    monkeypatch.setattr(telemetry, "_done", False)  # as in a process not configured yet
    with caplog.at_level(logging.WARNING, logger=telemetry.__name__):
        assert telemetry.configure({"OTEL_EXPORTER": "zipkin"}) == "none"
    assert "OTEL_EXPORTER='zipkin'" in caplog.text
