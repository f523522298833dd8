"""The kit's package: every exported name resolves, and importing one module of it does not
load the rest, nor any SDK (cold start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import agents.backbone


def test_every_exported_name_resolves():
    missing = [name for name in agents.backbone.__all__ if getattr(agents.backbone, name) is None]
    assert missing == []


def test_importing_the_envelope_loads_no_sdk_and_no_adapter():
    probe = ("import sys, agents.backbone.envelope; print(sorted(m for m in sys.modules"
             " if m.startswith(('agents.backbone.', 'azure', 'jsonschema', 'tenacity'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[3]).stdout.strip()
    assert loaded == "['agents.backbone.envelope', 'agents.backbone.errors']"
