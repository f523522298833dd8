"""The real Python worker (azure-functions-runtime, Python 3.13) accepts the app's functions:
SDK-type Service Bus triggers with a ServiceBusMessageActions parameter included.

Needs a Python 3.13 with azure-functions-runtime and requirements.txt installed: `make test`
builds `.venv-worker` (requirements-worker.txt) when the machine has a Python 3.13;
FUNCTIONS_RUNTIME_PYTHON points elsewhere. Skipped, saying why, without one.
Without it, the worker's annotation rule is still checked here on every function.
"""

from __future__ import annotations

import collections.abc
import importlib.util
import json
import os
import subprocess
import types
import typing
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs inside the 3.13 interpreter: index as the worker does, then register each function
# through the worker's own validation (Registry.add_indexed_function).
INDEX_SCRIPT = """
import json, sys, types
sys.path.insert(0, sys.argv[1])
from azure_functions_runtime import functions, loader
from azure_functions_runtime.bindings import meta
meta.load_binding_registry()
# The host sends these enum values over the worker protocol (FunctionRpc.proto BindingInfo:
# Direction in=0 out=1 inout=2, DataType undefined=0); the worker reads only them here.
protos = types.SimpleNamespace(BindingInfo=types.SimpleNamespace(
    **{"in": 0}, out=1, inout=2, undefined=0))
registry = functions.Registry()
report = {}
for function in loader.index_function_app(sys.argv[1] + "/function_app.py"):
    info = registry.add_indexed_function(function, protos)
    trigger = function.get_trigger()
    report[function.get_function_name()] = {
        "deferred": bool(info.deferred_bindings_enabled),
        "settlement_client_arg": info.settlement_client_arg,
        "autoComplete": trigger.get_dict_repr().get("autoCompleteMessages"),
    }
print(json.dumps(report))
"""


def _runtime_python() -> str | None:
    configured = os.environ.get("FUNCTIONS_RUNTIME_PYTHON")
    if configured:
        return configured
    built = REPO / ".venv-worker" / "bin" / "python"
    return str(built) if built.exists() else None


@pytest.fixture(scope="module")
def runtime_python() -> str:
    python = _runtime_python()
    if python is None:
        pytest.skip("no 3.13 worker venv: `make worker` builds .venv-worker when a Python 3.13 is "
                    "here (or set FUNCTIONS_RUNTIME_PYTHON)")
    probe = subprocess.run([python, "-c", "import azure_functions_runtime, "
                            "azurefunctions.extensions.bindings.servicebus, azure.data.tables"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{python} lacks azure-functions-runtime or requirements.txt: "
                    f"{probe.stderr.strip().splitlines()[-1]}")
    return python


def test_the_python_worker_accepts_the_sdk_type_service_bus_triggers(
        runtime_python: str) -> None:
    # With the simulated services registered too: their triggers settle themselves as well.
    indexed = subprocess.run([runtime_python, "-c", INDEX_SCRIPT, str(REPO)],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "ORDERS_SIMULATORS_ENABLED": "true"})
    assert indexed.returncode == 0, indexed.stderr
    report = json.loads(indexed.stdout.strip().splitlines()[-1])
    for name in ("orders_saga", "orders_fraud_alert", "orders_inventory", "orders_payments",
                 "orders_shipping"):
        assert report[name] == {"deferred": True, "settlement_client_arg": "actions",
                                "autoComplete": False}


def _annotation_the_worker_refuses(annotation: object) -> bool:
    """The worker's rule (FunctionLoadError "invalid non-type annotation"): a parameter is
    annotated with a class or a `typing` generic such as `typing.List[...]`; its vendored
    typing_inspect knows no PEP 585 `list[...]`, and refuses unions, tuples and callables."""
    if isinstance(annotation, type):
        return False
    origin = typing.get_origin(annotation)
    return (isinstance(annotation, types.GenericAlias | types.UnionType) or origin is None
            or origin in (typing.Union, tuple, collections.abc.Callable))


def test_every_function_parameter_has_an_annotation_the_worker_can_index() -> None:
    # Runs without a 3.13 worker (CI): the fraud trigger's list[EventHubEvent] made the
    # real worker refuse the whole app while every other test passed.
    saved = os.environ.get("ORDERS_SIMULATORS_ENABLED")
    os.environ["ORDERS_SIMULATORS_ENABLED"] = "true"  # every function the app can register
    try:
        spec = importlib.util.spec_from_file_location("function_app_indexed",
                                                      REPO / "function_app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            os.environ.pop("ORDERS_SIMULATORS_ENABLED")
        else:
            os.environ["ORDERS_SIMULATORS_ENABLED"] = saved
    refused = {}
    for function in module.app.get_functions():
        hints = typing.get_type_hints(function.get_user_function())
        refused |= {f"{function.get_function_name()}({name})": hint
                    for name, hint in hints.items()
                    if name != "return" and _annotation_the_worker_refuses(hint)}
    assert refused == {}
