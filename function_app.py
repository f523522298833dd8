"""Composition root: the FunctionApp, with each agent's Blueprint registered."""

import azure.functions as func

from agents.orders.blueprint import bp as orders

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orders)
