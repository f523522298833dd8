"""What the benchmarks share: a server under test as a subprocess, its memory, the table.

A server runs in its own process so its resident memory is its own (read from /proc) and
the SDK's client threads do not compete with it for the interpreter lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Memory:
    """Resident set size of a process, in MiB: now and the peak so far."""

    current_mib: float
    peak_mib: float


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int

    @property
    def connection_string(self) -> str:
        """The emulator connection string both SDKs accept (no TLS, any key)."""
        return (
            f"Endpoint=sb://127.0.0.1:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )

    def memory(self) -> Memory:
        fields: dict[str, float] = {}
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
        return Memory(fields["VmRSS"], fields["VmHWM"])


@contextmanager
def server_process(*module_args: str) -> Iterator[ServerProcess]:
    """Run `python -m <module_args>` from the repository root; its first line of output must
    end with the AMQP port it listens on (`12345` or `... listening on 127.0.0.1:12345`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", *module_args],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        try:
            port = int(first_line.rsplit(":", 1)[-1])
        except ValueError:
            raise RuntimeError(
                f"{' '.join(module_args)} did not start: {first_line!r}"
            ) from None
        yield ServerProcess(process, port)
    finally:
        process.terminate()
        process.wait(timeout=30)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The first column left-aligned, the others right-aligned, each as wide as it needs."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())
