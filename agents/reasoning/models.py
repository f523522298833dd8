"""Model adapters over the official `openai` package: Azure OpenAI by identity, or any
OpenAI-compatible server by base URL (Ollama, llama.cpp server, vLLM, devstack).

`openai` and `azure.identity` are imported on the first call, not at import: cold start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from agents.reasoning.errors import InvalidAnswer, ReasonerUnavailable

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

COGNITIVE_SERVICES_SCOPE = "https://cognitiveservices.azure.com/.default"
TokenProvider = Callable[[], str]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    usage: Usage


class ChatModel(Protocol):
    """What the Reasoner needs from a model: one structured chat completion."""

    def complete(self, name: str, messages: Sequence[Mapping[str, str]],
                 schema: Mapping[str, Any]) -> Completion: ...


class OpenAIChatModel:
    """Chat Completions with `response_format` json_schema (strict) through an `openai` client,
    built on first use by `build`; SDK errors become ReasonerUnavailable / InvalidAnswer."""

    def __init__(self, build: Callable[[], OpenAI], model: str) -> None:
        self.model = model
        self._build = build
        self._client: OpenAI | None = None
        self._lock = threading.Lock()

    def client(self) -> OpenAI:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def complete(self, name: str, messages: Sequence[Mapping[str, str]],
                 schema: Mapping[str, Any]) -> Completion:
        import openai

        client = self.client()
        sent = [cast("ChatCompletionMessageParam", dict(message)) for message in messages]
        response_format: ResponseFormatJSONSchema = {"type": "json_schema", "json_schema": {
            "name": name, "schema": dict(schema), "strict": True}}
        try:
            response = client.chat.completions.create(
                model=self.model, messages=sent, response_format=response_format,
                temperature=0,
            )
        except openai.APITimeoutError as error:
            raise ReasonerUnavailable(f"{self.model}: timed out") from error
        except openai.APIConnectionError as error:
            raise ReasonerUnavailable(f"{self.model}: unreachable: {error}") from error
        except openai.APIStatusError as error:
            raise ReasonerUnavailable(f"{self.model}: answered {error.status_code}: "
                                      f"{_first_line(error)}") from error
        except openai.APIError as error:  # e.g. a body the SDK cannot parse
            raise InvalidAnswer(f"{self.model}: unreadable response: {error}") from error
        if not response.choices:
            raise InvalidAnswer(f"{self.model}: no choices in the response")
        choice = response.choices[0]
        if choice.message.refusal:
            raise InvalidAnswer(f"{self.model}: refused: {choice.message.refusal}")
        if choice.finish_reason == "length":
            raise InvalidAnswer(f"{self.model}: answer cut off at the token limit")
        usage = response.usage
        return Completion(
            choice.message.content or "", response.model or self.model,
            Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
            if usage is not None else Usage(0, 0, 0),
        )


def azure_openai(endpoint: str, deployment: str, *, api_version: str, timeout: float,
                 max_retries: int, token_provider: TokenProvider | None = None
                 ) -> OpenAIChatModel:
    """Azure OpenAI with an Entra ID token (DefaultAzureCredential unless `token_provider`
    is given: the app's managed identity in Azure, AZURE_CLIENT_ID choosing it); no key."""

    def build() -> OpenAI:
        from openai import AzureOpenAI

        return AzureOpenAI(
            azure_endpoint=endpoint, azure_deployment=deployment, api_version=api_version,
            azure_ad_token_provider=token_provider or default_token_provider(),
            timeout=timeout, max_retries=max_retries,
        )

    return OpenAIChatModel(build, deployment)


def openai_compatible(base_url: str, model: str, *, timeout: float, max_retries: int,
                      api_key: str | None = None) -> OpenAIChatModel:
    """Any server speaking the OpenAI REST shape at `base_url` (e.g. http://localhost:11434/v1
    for Ollama). Local servers need no key; the SDK insists on one, so a placeholder is sent."""

    def build() -> OpenAI:
        from openai import OpenAI

        return OpenAI(base_url=base_url, api_key=api_key or "no-key", timeout=timeout,
                      max_retries=max_retries)

    return OpenAIChatModel(build, model)


def default_token_provider() -> TokenProvider:
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    provider: TokenProvider = get_bearer_token_provider(DefaultAzureCredential(),
                                                        COGNITIVE_SERVICES_SCOPE)
    return provider


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
