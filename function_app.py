"""Composition root: the FunctionApp, with each agent's Blueprint registered.

Each Blueprint composes its agent from the app settings on its first invocation, so importing
this module (cold start, indexing) opens no client.
"""

import os

import azure.functions as func

from agents.orders import bootstrap as orders_bootstrap
from agents.orders.blueprint import blueprint as orders_blueprint

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orders_blueprint(lambda: orders_bootstrap.bootstrap(os.environ)))
