"""`python -m agents.ops` as the on-call engineer runs it: a real process, settings from the
local.settings.json in the working directory (or the environment, which wins)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from azure.servicebus import ServiceBusMessage

from tests.integration.ops.bus import dead_letter_one, send

REPO = Path(__file__).resolve().parents[3]
SETTINGS = ("ORDERS_SERVICEBUS", "FRAUD_SERVICEBUS", "TRIAGE_SERVICEBUS", "FRAUD_EVENTHUBS",
            "STATE_STORAGE", "AzureWebJobsStorage")


def run_ops(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run(
        [sys.executable, "-m", "agents.ops", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**clean, "PYTHONPATH": str(REPO), "COLUMNS": "200", **env})


def test_reads_local_settings_json_from_the_working_directory(tmp_path, values, entities_dir,
                                                              bus):
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": values}))
    send(bus, "orders-shipping", ServiceBusMessage(b"{}", message_id="ship-1"))
    dead_letter_one(bus, "orders-shipping", reason="CarrierRejected")
    result = run_ops(tmp_path, "--entities", str(entities_dir), "deadletters", "list",
                     "--entity", "orders-shipping")
    assert result.returncode == 0, result.stderr
    assert "ship-1" in result.stdout and "CarrierRejected" in result.stdout


def test_a_missing_setting_exits_2_naming_both_forms(tmp_path, entities_dir):
    result = run_ops(tmp_path, "--entities", str(entities_dir), "deadletters", "list")
    assert result.returncode == 2
    assert "ORDERS_SERVICEBUS" in result.stderr
    assert "ORDERS_SERVICEBUS__fullyQualifiedNamespace" in result.stderr


def test_every_command_has_help(tmp_path):
    for command in ("deadletters", "poison", "eventgrid", "outbox"):
        result = run_ops(tmp_path, command, "--help")
        assert result.returncode == 0, result.stderr
        assert "replay" in result.stdout or "pending" in result.stdout
