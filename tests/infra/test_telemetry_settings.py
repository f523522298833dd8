"""OpenTelemetry on Azure: the host's OpenTelemetry mode, the worker's settings, one exporter."""

from __future__ import annotations

import json

from tests.infra import templates
from tests.infra.templates import INFRA


def test_the_host_runs_in_opentelemetry_mode() -> None:
    host = json.loads((INFRA.parent / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"


def test_the_worker_passes_trace_context_and_configures_no_second_distro() -> None:
    settings = templates.app_settings()
    assert settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in settings
