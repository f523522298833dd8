"""A local Event Grid: topics, filtered subscriptions, retry and dead-letter to blob."""

from devstack.eventgrid.config import EventGridConfig
from devstack.eventgrid.server import LocalEventGrid

__all__ = ["EventGridConfig", "LocalEventGrid"]
