"""Cold start: seconds to import `function_app.py` in a fresh interpreter, beside a
hello-world function app (one HTTP function, `azure.functions` only) in the same run.

The Functions worker imports `function_app.py` before it can run anything, so this is the
part of a cold start the app controls. Each run is a new interpreter (warm `.pyc` files, as
on a deployed app after its first start); the two apps alternate, and the median is shown,
of wall time and of CPU time (steadier on a shared machine).
The last column lists the heavy packages each import loaded: they should load on first use.

    python -m bench.cold_start [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.server_process import REPO, print_table

HELLO_APP = '''\
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="hello")
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")
'''

# Packages that cost tens of milliseconds each to import.
HEAVY = ("azure.servicebus", "azure.eventhub", "azure.eventgrid", "azure.identity",
         "azure.data.tables", "azure.storage.blob", "jsonschema", "grpc", "uamqp",
         "azurefunctions.extensions.bindings.servicebus")

PROBE = f'''\
import json, sys, time
started, cpu = time.perf_counter(), time.process_time()
import function_app
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu": cpu,
                   "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
'''


@dataclass
class Figures:
    name: str
    seconds: list[float]
    cpu: list[float]
    loaded: list[str]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def _import_once(app_dir: Path, figures: Figures | None = None) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=app_dir, capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if figures is not None:
        figures.seconds.append(float(result["seconds"]))
        figures.cpu.append(float(result["cpu"]))
        figures.loaded = list(result["loaded"])


def measure(runs: int) -> tuple[Figures, Figures]:
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        hello_dir = Path(scratch)
        (hello_dir / "function_app.py").write_text(HELLO_APP)
        hello = Figures("hello-world app (baseline)", [], [], [])
        ours = Figures("function_app.py", [], [], [])
        for app_dir in (hello_dir, REPO):  # writes the .pyc files, not counted
            _import_once(app_dir)
        for _ in range(runs):
            _import_once(hello_dir, hello)
            _import_once(REPO, ours)
    return hello, ours


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    hello, ours = measure(args.runs)
    print(f"\nCold start: import in a fresh interpreter, median of {args.runs} runs")
    print_table(
        ["app", "wall s", "x baseline", "cpu s", "x baseline", "heavy packages loaded"],
        [[f.name, f"{f.median:.3f}", f"{f.median / hello.median:.2f}",
          f"{f.median_cpu:.3f}", f"{f.median_cpu / hello.median_cpu:.2f}",
          ", ".join(f.loaded) or "-"]
         for f in (hello, ours)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
