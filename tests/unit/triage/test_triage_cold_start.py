"""Registering the triage Blueprint (at cold start, indexing) loads no SDK and no handler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_importing_the_blueprint_loads_neither_the_handlers_nor_an_sdk() -> None:
    probe = ("import sys, agents.triage.blueprint; print(sorted(m for m in sys.modules if"
             " m.startswith(('agents.triage.handlers', 'agents.reasoning', 'azure.data',"
             " 'azure.servicebus', 'azure.eventgrid', 'jsonschema', 'tenacity', 'openai'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[3]).stdout.strip()
    assert loaded == "[]"
