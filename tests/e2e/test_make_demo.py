"""`make demo`'s entry point as a user runs it: a subprocess that starts and stops the whole
local cloud, runs every story, prints the summary and exits 0 only if every check passed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_every_story_prints_the_summary_and_exits_zero() -> None:
    finished = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")],
                              capture_output=True, text=True, timeout=240, check=False)
    output = finished.stdout
    assert finished.returncode == 0, output + finished.stderr
    assert "SAGAS BY STATE" in output
    assert "compensated: 3, completed: 2" in output
    assert "EVENTS PER SECOND" in output
    assert "DEAD-LETTER CONTENTS" in output
    assert "MaxDeliveryCountExceeded" in output
    assert " FAIL " not in output  # a failed check prints "  FAIL <check>"
    assert "all invariants hold" in output
