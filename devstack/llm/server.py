"""The local model endpoint: the Azure OpenAI and OpenAI Chat Completions REST shapes, answered
by the deterministic local reasoner, with faults per deployment.

    with LocalModelServer(port=0) as llm:
        AzureOpenAI(azure_endpoint=llm.base_url, azure_ad_token_provider=lambda: "any",
                    api_version="2024-10-21")      # deployment = the model name
        OpenAI(base_url=llm.openai_base_url, api_key="any")
        llm.faults.throttle(retry_after=2, deployment="chat")

Routes: `POST /openai/deployments/{deployment}/chat/completions?api-version=...` (needs an
`Authorization: Bearer` or `api-key` header, any value), `POST /v1/chat/completions` (the
deployment is the body's `model`), `GET /health`, and the fault API under `/faults/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from devstack.llm.faults import FaultKind, ModelFaults
from devstack.llm.reasoner import answer_for, summary
from devstack.loop_thread import LoopThread

log = logging.getLogger("devstack.llm")
DEFAULT_PORT = 5081
HANG_SECONDS = 3600.0


def _tokens(text: str) -> int:
    """About four characters per token, as tokenizers average for English."""
    return max(1, math.ceil(len(text) / 4))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None
           ) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status,
                             headers=headers)


class LocalModelServer(LoopThread):
    """Serves on its own thread and event loop; a context manager. `requests` counts the chat
    requests that reached the server, per deployment (faulted ones too)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__("devstack-llm")
        self.host = host
        self.port = port
        self.clock = clock
        self.faults = ModelFaults(clock)
        self.requests: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        """The Azure OpenAI endpoint (`azure_endpoint=`)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The OpenAI-compatible base URL (`base_url=`)."""
        return f"{self.base_url}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_get("/health", self._health)
        app.router.add_routes(self.faults.routes())
        return app

    # ------------------------------------------------------------------ handlers

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy"})

    async def _azure(self, request: web.Request) -> web.Response:
        if "api-version" not in request.query:
            return _error(400, "MissingApiVersionParameter",
                          "The api-version query parameter (?api-version=) is required.")
        if not (request.headers.get("Authorization", "").startswith("Bearer ")
                or request.headers.get("api-key")):
            return _error(401, "401", "Access denied: no Authorization bearer token or "
                                      "api-key header.")
        return await self._complete(request, request.match_info["deployment"])

    async def _openai(self, request: web.Request) -> web.Response:
        return await self._complete(request, None)

    async def _complete(self, request: web.Request, deployment: str | None) -> web.Response:
        try:
            body = await request.json()
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as error:
            return _error(400, "invalid_request_error", f"invalid request body: {error}")
        name = deployment or str(body.get("model", ""))
        if not name:
            return _error(400, "invalid_request_error", "model is required")
        self.requests[name] += 1
        planned = self.faults.plan(name)
        if planned.delay:
            await asyncio.sleep(planned.delay)
        fault = planned.fault
        if fault is not None and fault.kind is FaultKind.HANG:
            assert self._closing is not None
            # Held until the client gives up (the handler is cancelled) or the server stops.
            await asyncio.wait_for(self._closing.wait(), HANG_SECONDS)
            return _error(503, "ServiceUnavailable", "server stopping")
        if fault is not None and fault.kind is FaultKind.THROTTLE:
            seconds = fault.retry_after or 0.0
            return _error(429, "429", "Requests to the deployment have exceeded the rate "
                                      "limit (devstack fault injection).",
                          {"retry-after": str(math.ceil(seconds)),
                           "retry-after-ms": str(int(seconds * 1000))})
        if fault is not None and fault.kind in (FaultKind.ERROR, FaultKind.OUTAGE):
            return _error(fault.status, str(fault.status),
                          f"The service is unavailable (devstack fault {fault.kind.value}).")
        content = self._content(body, messages, fault.kind if fault else None)
        return web.json_response(self._completion(name, messages, content))

    def _content(self, body: dict[str, Any], messages: list[Any],
                 fault: FaultKind | None) -> str:
        user = next((str(m.get("content", "")) for m in reversed(messages)
                     if isinstance(m, dict) and m.get("role") == "user"), "")
        response_format = body.get("response_format") or {}
        schema = (response_format.get("json_schema") or {}).get("schema")
        if fault is FaultKind.MALFORMED:
            return '{"answer": "cut off'
        if fault is FaultKind.WRONG_SCHEMA:
            return json.dumps({"unexpected": True, "schema_ignored": True})
        if response_format.get("type") == "json_schema" and isinstance(schema, dict):
            return json.dumps(answer_for(schema, user))
        if response_format.get("type") == "json_object":
            return json.dumps({"answer": summary(user)})
        return summary(user)

    def _completion(self, name: str, messages: list[Any], content: str) -> dict[str, Any]:
        prompt = _tokens(json.dumps(messages))
        completion = _tokens(content)
        digest = hashlib.sha256(f"{name}\n{json.dumps(messages)}".encode()).hexdigest()
        return {
            "id": f"chatcmpl-{digest[:24]}", "object": "chat.completion",
            "created": int(self.clock()), "model": name,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content,
                                     "refusal": None}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        # handler_cancellation: a client that times out cancels its hanging request.
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
