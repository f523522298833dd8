"""The host's HTTP front door: HTTP triggers, the Event Grid webhook, and the admin API."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.timer import TimerRequest

from devstack.host.index import FunctionSpec
from devstack.host.invocation import Invoker
from devstack.host.routes import RouteTemplate
from devstack.host.settings import AppSettings

log = logging.getLogger("devstack.host")
EVENT_GRID_WEBHOOK = "/runtime/webhooks/eventgrid"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"


@dataclass(frozen=True)
class HostKeys:
    """Function, master and Event Grid system keys; from app settings or generated."""

    function: str
    master: str
    event_grid: str

    @classmethod
    def from_settings(cls, settings: AppSettings) -> HostKeys:
        def key(name: str) -> str:
            return settings.get(name) or secrets.token_urlsafe(32)

        return cls(function=key("DEVSTACK_HOST_FUNCTION_KEY"),
                   master=key("DEVSTACK_HOST_MASTER_KEY"),
                   event_grid=key("DEVSTACK_HOST_EVENTGRID_KEY"))

    def allows(self, auth_level: str, presented: str | None) -> bool:
        level = auth_level.lower()
        if level == "anonymous":
            return True
        if not presented:
            return False
        accepted = [self.master] if level == "admin" else [self.function, self.master]
        return any(hmac.compare_digest(presented, key) for key in accepted)


def presented_key(request: web.Request) -> str | None:
    return request.query.get("code") or request.headers.get("x-functions-key")


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    template: RouteTemplate
    methods: frozenset[str]
    auth_level: str

    @classmethod
    def of(cls, spec: FunctionSpec, prefix: str) -> HttpRoute:
        route = spec.trigger.get("route") or spec.name
        methods = frozenset(m.upper() for m in spec.trigger.get("methods") or ())
        return cls(spec, RouteTemplate.compile(prefix, str(route)), methods,
                   str(spec.trigger.get("authLevel") or "function"))


class HttpFrontDoor:
    """An aiohttp application serving every HTTP-facing part of the host."""

    def __init__(self, *, functions: Sequence[FunctionSpec], route_prefix: str,
                 keys: HostKeys, invoker: Invoker) -> None:
        self._routes = [HttpRoute.of(s, route_prefix) for s in functions
                        if s.trigger_type == "httpTrigger"]
        self._event_grid = {s.name.lower(): s for s in functions
                            if s.trigger_type == "eventGridTrigger"}
        self._by_name = {s.name.lower(): s for s in functions}
        self._keys = keys
        self._invoker = invoker

    @property
    def routes(self) -> list[HttpRoute]:
        return list(self._routes)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_get("/admin/host/status", self._status)
        app.router.add_post("/admin/functions/{name}", self._admin_invoke)
        app.router.add_route("*", EVENT_GRID_WEBHOOK, self._event_grid_webhook)
        app.router.add_route("*", "/{tail:.*}", self._http_trigger)
        return app

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running"})

    async def _http_trigger(self, request: web.Request) -> web.StreamResponse:
        path_matched = False
        for route in self._routes:
            params = route.template.match(request.path)
            if params is None:
                continue
            path_matched = True
            if route.methods and request.method.upper() not in route.methods:
                continue
            if not self._keys.allows(route.auth_level, presented_key(request)):
                return web.Response(status=401)
            return await self._run_http(route, request, params)
        return web.Response(status=405 if path_matched else 404)

    async def _run_http(self, route: HttpRoute, request: web.Request,
                        params: Mapping[str, str]) -> web.StreamResponse:
        body = await request.read()
        http_request = func.HttpRequest(
            method=request.method, url=str(request.url), headers=dict(request.headers),
            params=dict(request.query), route_params=dict(params), body=body)
        try:
            result = await self._invoker.invoke(route.spec, http_request,
                                                reason=f"This HTTP triggered function "
                                                       f"executed. {request.method} "
                                                       f"{request.path}")
        except Exception:
            return web.Response(status=500)
        return _to_response(result)

    async def _admin_invoke(self, request: web.Request) -> web.Response:
        """POST /admin/functions/{name}: run a non-HTTP function now, as the Azure admin API."""
        if not self._keys.allows("admin", presented_key(request)):
            return web.Response(status=401)
        spec = self._by_name.get(request.match_info["name"].lower())
        if spec is None or spec.trigger_type == "httpTrigger":
            return web.Response(status=404)
        if spec.trigger_type != "timerTrigger":
            return web.Response(status=400, text="devstack invokes only timer functions here")
        await self._invoker.invoke(spec, TimerRequest(past_due=False),
                                   reason="This function was programmatically called via "
                                          "the host APIs.")
        return web.Response(status=202)

    async def _event_grid_webhook(self, request: web.Request) -> web.Response:
        """Event Grid's push delivery, as the Event Grid extension answers it."""
        if request.method == "OPTIONS":
            # CloudEvents abuse-protection handshake.
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})
        if request.method != "POST":
            return web.Response(status=405)
        key = presented_key(request) or request.headers.get("aeg-sas-key")
        if not key or not any(hmac.compare_digest(key, k)
                              for k in (self._keys.event_grid, self._keys.master)):
            return web.Response(status=401)
        spec = self._event_grid.get(request.query.get("functionName", "").lower())
        if spec is None:
            return web.Response(status=404, text="no Event Grid triggered function by that name")
        try:
            document = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="body is not JSON")
        events = document if isinstance(document, list) else [document]
        if any(not isinstance(e, dict) for e in events):
            return web.Response(status=400, text="each event must be a JSON object")
        validation = _validation_response(events)
        if validation is not None:
            return web.json_response({"validationResponse": validation})
        for event in events:
            trigger_value = EventGridEventInConverter.decode(
                meta.Datum(json.dumps(event), "json"), trigger_metadata={})
            try:
                await self._invoker.invoke(spec, trigger_value,
                                           reason=f"EventGrid trigger fired at {event.get('id')}")
            except Exception:
                # A failure makes Event Grid retry the delivery, per its subscription policy.
                return web.Response(status=500)
        return web.Response(status=202)


def _validation_response(events: list[dict[str, Any]]) -> str | None:
    for event in events:
        if event.get("eventType") == SUBSCRIPTION_VALIDATION:
            code = (event.get("data") or {}).get("validationCode")
            return str(code)
    return None


def _to_response(result: Any) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str):
        return web.Response(status=200, text=result)
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        content_type = headers.pop("content-type", None) or headers.pop("Content-Type", None)
        if content_type is None:
            content_type = f"{result.mimetype}; charset={result.charset}"
        headers["Content-Type"] = content_type
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    raise TypeError(f"HTTP function returned {type(result).__name__}; expected HttpResponse or str")
