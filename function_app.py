"""Composition root: the FunctionApp, with each agent's Blueprint registered.

Each Blueprint composes its agent from the app settings on its first invocation, so importing
this module (cold start, indexing) opens no client and loads no agent's adapters.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import azure.functions as func

from agents.orders.blueprint import blueprint as orders_blueprint

if TYPE_CHECKING:
    from agents.orders.handlers import OrdersAgent


def compose_orders() -> OrdersAgent:
    from agents.orders import bootstrap  # its adapters and SDKs load on first invocation

    return bootstrap.bootstrap(os.environ)


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orders_blueprint(compose_orders))
