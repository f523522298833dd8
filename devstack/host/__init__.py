"""A local Functions host: runs a v2 Python function app's functions as Azure would."""

from devstack.host.runtime import FunctionsHost

__all__ = ["FunctionsHost"]
