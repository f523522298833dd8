"""Cold start: what loading `function_app.py` costs, beside two baselines in the same run:
a hello-world function app (one HTTP function, `azure.functions` only), and the same app
plus one Service Bus trigger on the SDK-type binding with message actions: the floor any app
that settles explicitly pays (`azurefunctions-extensions-bindings-servicebus`).

Two ways of loading each app, each in a fresh interpreter (warm `.pyc` files, as on a
deployed app after its first start), the apps alternating, medians shown:

- plain import: `import function_app` in this interpreter, nothing loaded before it;
- as the worker indexes it: Python 3.13 with `azure-functions-runtime` (the library worker)
  first loads what the worker has loaded before it indexes: grpc and protobuf (its channel
  to the host), the runtime, and `azure.functions` through the runtime's own
  `load_binding_registry` (as its `worker_init_request` does); then the step timed is the
  runtime's `index_function_app` and `Registry.add_indexed_function` for each function.
  The interpreter is `--runtime-python` or FUNCTIONS_RUNTIME_PYTHON; without one that has
  `azure-functions-runtime` and requirements.txt, the run says why these rows are missing.

"step" is the import (or the indexing) alone; "from spawn" is from starting the interpreter
to the app loaded (or indexed), worker preload included: the part of a cold start that
differs between apps. Each shows wall and CPU seconds; the ratios are of CPU seconds, which a
shared machine disturbs less. The last column lists the heavy packages the step brought in
(for the worker, those it had not loaded already).

    python -m bench.cold_start [--runs 9] [--runtime-python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.server_process import REPO, print_table

HELLO_APP = '''\
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="hello")
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")
'''

SETTLING_APP = HELLO_APP.replace(
    "import azure.functions as func\n",
    "import azure.functions as func\n"
    "import azurefunctions.extensions.bindings.servicebus as servicebus\n") + '''

@app.service_bus_queue_trigger(arg_name="message", queue_name="hello", connection="SB",
                               auto_complete_messages=False)
def settle(message: servicebus.ServiceBusReceivedMessage,
           actions: servicebus.ServiceBusMessageActions) -> None:
    actions.complete(message)
'''

# Packages that cost tens of milliseconds each to import.
HEAVY = ("azure.servicebus", "azure.eventhub", "azure.eventgrid", "azure.identity",
         "azure.data.tables", "azure.storage.blob", "azure.core", "jsonschema", "grpc",
         "google.protobuf", "uamqp", "azurefunctions.extensions.bindings.servicebus",
         "openai", "opentelemetry")

# argv: the app directory (also the cwd), then the time.time() at which the parent spawned us.
IMPORT_PROBE = f'''\
import json, sys, time
started, cpu = time.perf_counter(), time.process_time()
import function_app
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu": cpu, "spawn": time.time() - float(sys.argv[2]),
                   "spawn_cpu": time.process_time(),
                   "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
'''

WORKER_PROBE = f'''\
import json, sys, time, types
import grpc, google.protobuf  # the worker's channel to the host, open before it indexes
from azure_functions_runtime import functions, loader
from azure_functions_runtime.bindings import meta
meta.load_binding_registry()  # what worker_init_request does first: loads azure.functions
before = set(sys.modules)
sys.path.insert(0, sys.argv[1])
# The host's protocol enums the registry reads (FunctionRpc.proto BindingInfo: Direction
# in=0 out=1 inout=2, DataType undefined=0); the proxy worker's protos are not on PyPI.
protos = types.SimpleNamespace(BindingInfo=types.SimpleNamespace(
    **{{"in": 0}}, out=1, inout=2, undefined=0))
started, cpu = time.perf_counter(), time.process_time()
registry = functions.Registry()
for function in loader.index_function_app(sys.argv[1] + "/function_app.py"):
    info = registry.add_indexed_function(function, protos)
    loader.get_fx_raw_bindings(indexed_function=function, function_info=info)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu": cpu, "spawn": time.time() - float(sys.argv[2]),
                   "spawn_cpu": time.process_time(),
                   "loaded": [m for m in {HEAVY!r} if m in sys.modules and m not in before]}}))
'''


@dataclass
class Figures:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    spawn: list[float] = field(default_factory=list)
    spawn_cpu: list[float] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    @property
    def median_spawn(self) -> float:
        return statistics.median(self.spawn)

    @property
    def median_spawn_cpu(self) -> float:
        return statistics.median(self.spawn_cpu)


@dataclass
class Loader:
    """One way of loading an app: an interpreter and the probe it runs in the app's folder."""

    title: str
    python: str
    probe: str

    def load_once(self, app_dir: Path, figures: Figures | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ORDERS_SIMULATORS_ENABLED"}
        command = [self.python, "-c", self.probe, str(app_dir), repr(time.time())]
        done = subprocess.run(command, cwd=app_dir,
                              env=env, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if figures is not None:
            figures.seconds.append(float(result["seconds"]))
            figures.cpu.append(float(result["cpu"]))
            figures.spawn.append(float(result["spawn"]))
            figures.spawn_cpu.append(float(result["spawn_cpu"]))
            figures.loaded = list(result["loaded"])


def runtime_python(configured: str | None) -> tuple[str | None, str]:
    """The 3.13 interpreter with the library worker and requirements.txt, or why there is none."""
    python = configured or os.environ.get("FUNCTIONS_RUNTIME_PYTHON")
    if not python:
        return None, "no --runtime-python or FUNCTIONS_RUNTIME_PYTHON"
    probe = subprocess.run([python, "-c", "import azure_functions_runtime, azure.data.tables, "
                            "azurefunctions.extensions.bindings.servicebus"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return None, f"{python}: {(probe.stderr.strip().splitlines() or ['fails'])[-1]}"
    return python, ""


def measure(loader: Loader, runs: int) -> list[Figures]:
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        apps = {"hello-world app": Path(scratch) / "hello",
                "hello-world + SDK-type trigger (floor)": Path(scratch) / "settling",
                "function_app.py": REPO}
        for app_dir, source in ((apps["hello-world app"], HELLO_APP),
                                (apps["hello-world + SDK-type trigger (floor)"],
                                 SETTLING_APP)):
            app_dir.mkdir()
            (app_dir / "function_app.py").write_text(source)
        figures = {name: Figures(name) for name in apps}
        for app_dir in apps.values():  # writes the .pyc files, not counted
            loader.load_once(app_dir)
        for _ in range(runs):
            for name, app_dir in apps.items():
                loader.load_once(app_dir, figures[name])
    return list(figures.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--runtime-python", help="Python 3.13 with azure-functions-runtime")
    args = parser.parse_args(argv)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    loaders = [Loader(f"plain import, Python {version}", sys.executable, IMPORT_PROBE)]
    python, missing = runtime_python(args.runtime_python)
    if python is not None:
        loaders.append(Loader("as the worker indexes it, azure-functions-runtime on 3.13",
                              python, WORKER_PROBE))
    print(f"\nCold start: median of {args.runs} fresh interpreters per app and way of loading")
    for loader in loaders:
        hello, floor, ours = measure(loader, args.runs)
        print(f"\n{loader.title}")
        print_table(
            ["app", "step s", "cpu s", "x hello", "x floor", "from spawn s", "cpu s",
             "x hello", "x floor", "heavy packages the step loaded"],
            [[f.name, f"{f.median:.3f}", f"{f.median_cpu:.3f}",
              f"{f.median_cpu / hello.median_cpu:.2f}", f"{f.median_cpu / floor.median_cpu:.2f}",
              f"{f.median_spawn:.3f}", f"{f.median_spawn_cpu:.3f}",
              f"{f.median_spawn_cpu / hello.median_spawn_cpu:.2f}",
              f"{f.median_spawn_cpu / floor.median_spawn_cpu:.2f}", ", ".join(f.loaded) or "-"]
             for f in (hello, floor, ours)])
    if python is None:
        print(f"\nas the worker indexes it: not measured ({missing})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
