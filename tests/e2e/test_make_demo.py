"""`make demo`'s entry point as a user runs it: a subprocess that starts and stops the whole
local cloud, runs every story, prints the summary and exits 0 only if every check passed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, str(ROOT / "scripts" / "demo.py")]


def children(pid: int) -> list[int]:
    return [int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_demo_runs_every_story_prints_the_summary_and_exits_zero() -> None:
    finished = subprocess.run(DEMO, capture_output=True, text=True, timeout=240, check=False)
    output = finished.stdout
    assert finished.returncode == 0, output + finished.stderr
    assert "SAGAS BY STATE" in output
    assert "compensated: 3, completed: 3" in output
    assert "EVENTS PER SECOND" in output
    assert "DEAD-LETTER CONTENTS" in output
    assert "InvalidEncoding" in output
    assert " FAIL " not in output  # a failed check prints "  FAIL <check>"
    assert "all invariants hold" in output


def test_ctrl_c_stops_the_demo_and_everything_it_started() -> None:
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            # a shell's background job ignores SIGINT; a terminal's does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # wait until a story has run: everything is up
            if "1. Happy path" in line:
                break
        else:
            raise AssertionError("the demo ended before its first story")
        started = children(demo.pid)
        assert started, "the demo runs Azurite as a child process"
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130
    assert "interrupted" in rest
    assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []
