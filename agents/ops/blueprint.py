"""The read-only HTTP view of the dead-letter queues: `GET /api/ops/deadletters[?entity=...]`
(admin auth level: the master key, as for the host's own admin API). Register it in
function_app.py with `app.register_functions(agents.ops.blueprint.bp)`.

The same `deadletters.list_dead_letters` as the CLI. The entity catalogue is
`infra/entities/`, or the directory in the `OPS_ENTITIES_DIR` setting (deploy it with the app).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import azure.functions as func
from azure.core.exceptions import AzureError
from azure.servicebus.exceptions import ServiceBusError

from agents.backbone.errors import ConfigurationError
from agents.ops.config import Catalogue, OpsError
from agents.ops.connections import Connections
from agents.ops.deadletters import list_dead_letters

ENTITIES_SETTING = "OPS_ENTITIES_DIR"
log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("ops_deadletters")
@bp.route(route="ops/deadletters", methods=[func.HttpMethod.GET],
          auth_level=func.AuthLevel.ADMIN)
def ops_deadletters(req: func.HttpRequest) -> func.HttpResponse:
    """Every dead-lettered message (peeked, nothing consumed), as the CLI lists them."""
    entities = os.environ.get(ENTITIES_SETTING)
    try:
        catalogue = Catalogue.load(Path(entities) if entities else None)
    except OpsError as error:
        log.error("ops/deadletters: %s", error)
        return _error(500, str(error))
    try:
        with Connections(dict(os.environ)) as connections:
            letters = list_dead_letters(connections, catalogue, req.params.get("entity"))
    except OpsError as error:
        return _error(400, str(error))
    except ConfigurationError as error:
        log.error("ops/deadletters: %s", error)
        return _error(500, str(error))
    except (ServiceBusError, AzureError, OSError) as error:
        log.exception("ops/deadletters: Service Bus call failed")
        return _error(502, f"{type(error).__name__}: {error}")
    return func.HttpResponse(json.dumps([letter.summary() for letter in letters]),
                             mimetype="application/json")


def _error(status: int, message: str) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"error": message}), status_code=status,
                             mimetype="application/json")
