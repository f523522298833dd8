"""Composition root: the FunctionApp, with each agent's Blueprint registered."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
