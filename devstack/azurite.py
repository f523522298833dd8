"""Start and stop Azurite (the pinned npm package) on free loopback ports, in memory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

# Azurite's documented well-known development account (public, not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_SERVICES = ("blob", "queue", "table")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_azurite(start: Path | None = None) -> Path:
    """The `azurite` launcher from the nearest node_modules/.bin, or PATH."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parent.parent):
        candidate = folder / "node_modules" / ".bin" / "azurite"
        if candidate.exists():
            return candidate
    found = shutil.which("azurite")
    if found:
        return Path(found)
    raise FileNotFoundError("azurite not found: run `npm ci` in the repository root")


@dataclass
class Azurite:
    """A running Azurite with blob, queue and table endpoints on free ports.

    Use as a context manager; `connection_string` works with every azure-storage SDK.
    """

    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        endpoints = ";".join(
            f"{name.capitalize()}Endpoint=http://{self.host}:{port}/{ACCOUNT_NAME}"
            for name, port in self.ports.items()
        )
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};{endpoints};"
        )

    def start(self, timeout: float = 30.0) -> Azurite:
        self.ports = {name: self.ports.get(name) or free_port(self.host) for name in _SERVICES}
        args = [str(find_azurite()), "--silent", "--inMemoryPersistence",
                "--skipApiVersionCheck", "--loose"]
        for name, port in self.ports.items():
            args += [f"--{name}Host", self.host, f"--{name}Port", str(port)]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
        )
        deadline = time.monotonic() + timeout
        while not all(self._accepts(port) for port in self.ports.values()):
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"azurite exited with {self._process.returncode}: {stderr}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"azurite did not listen on {self.ports} within {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def _accepts(self, port: int) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((self.host, port)) == 0

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
