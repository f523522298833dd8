"""A local Functions host: runs a v2 Python function app's functions as Azure would."""

from devstack.host.cli import app_command, emulator_settings, run_app
from devstack.host.runtime import FunctionsHost

__all__ = ["FunctionsHost", "app_command", "emulator_settings", "run_app"]
