"""Composition root: the FunctionApp, with each agent's Blueprint registered.

Each Blueprint composes its agent from the app settings on its first invocation, so importing
this module (cold start, indexing) opens no client and loads no agent's adapters. The simulated
services are registered only where `ORDERS_SIMULATORS_ENABLED` says so (locally; never in the
Bicep deployment).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import azure.functions as func

from agents.backbone import telemetry
from agents.fraud.blueprint import blueprint as fraud_blueprint
from agents.orders import simulated
from agents.orders.blueprint import blueprint as orders_blueprint
from agents.triage.blueprint import blueprint as triage_blueprint

if TYPE_CHECKING:
    from agents.backbone.publishers import Publisher
    from agents.fraud.handlers import FraudAgent
    from agents.orders.handlers import OrdersAgent
    from agents.orders.simulated.handlers import SimulatedServices
    from agents.triage.handlers import TriageAgent
    from agents.triage.webhook import WebhookSettings


def compose_orders() -> OrdersAgent:
    from agents.orders import bootstrap  # its adapters and SDKs load on first invocation

    telemetry.configure(os.environ)
    return bootstrap.bootstrap(os.environ)


def compose_fraud() -> FraudAgent:
    from agents.fraud import bootstrap

    telemetry.configure(os.environ)
    return bootstrap.bootstrap(os.environ)


def compose_fraud_parking() -> Publisher:
    from agents.fraud import bootstrap

    return bootstrap.parking(os.environ)


def compose_triage() -> TriageAgent:
    from agents.triage import bootstrap

    telemetry.configure(os.environ)
    return bootstrap.bootstrap(os.environ)


def triage_webhook() -> WebhookSettings | None:
    from agents.triage.webhook import WebhookSettings

    return WebhookSettings.from_env(os.environ)


def compose_simulated() -> SimulatedServices:
    from agents.orders.simulated import bootstrap

    telemetry.configure(os.environ)
    return bootstrap.bootstrap(os.environ)


app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orders_blueprint(compose_orders))
app.register_functions(fraud_blueprint(compose_fraud, compose_fraud_parking))
app.register_functions(triage_blueprint(compose_triage, triage_webhook))
if simulated.enabled(os.environ):
    from agents.orders.simulated.blueprint import blueprint as simulated_blueprint

    app.register_functions(simulated_blueprint(compose_simulated))
