"""The Reasoner an agent uses, from app settings (names in the README and
local.settings.sample.json). `LLM_PROVIDER`:

- `azure_openai`: `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_DEPLOYMENT`, `AZURE_OPENAI_API_VERSION`,
  Entra ID token of the app identity (no key setting exists);
- `openai_compatible`: `LLM_BASE_URL`, `LLM_MODEL` (Ollama, llama.cpp server, vLLM);
- `local`: devstack's model endpoint at `AZURE_OPENAI_ENDPOINT` (loopback only), through the
  same Azure OpenAI adapter with a placeholder token;
- `none`: no model; the agents take their fallback.

All providers: `LLM_TIMEOUT_SECONDS`, `LLM_MAX_RETRIES` (SDK retries, kept few so the breaker
sees failures) and `LLM_BREAKER_*`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agents.backbone.breaker import BreakerOptions, CircuitBreaker
from agents.backbone.errors import ConfigurationError
from agents.reasoning.models import OpenAIChatModel, azure_openai, openai_compatible
from agents.reasoning.reasoner import Reasoner

if TYPE_CHECKING:
    from azure.data.tables import TableClient

DEFAULT_API_VERSION = "2024-10-21"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 1
DEFAULT_LOCAL_ENDPOINT = "http://127.0.0.1:5081"
PROVIDERS = ("azure_openai", "openai_compatible", "local", "none")
LOCAL_TOKEN = "devstack-local-token"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_OTHER_PROVIDERS = {
    "azure_openai": ("LLM_BASE_URL", "LLM_MODEL"),
    "local": ("LLM_BASE_URL", "LLM_MODEL"),
    "openai_compatible": ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT",
                          "AZURE_OPENAI_API_VERSION"),
}
log = logging.getLogger("agents.reasoning")


def reasoner_from_settings(
    env: Mapping[str, str] | None = None,
    *,
    breaker_table: TableClient | None = None,
    clock: Callable[[], float] = time.time,
) -> Reasoner | None:
    """The configured Reasoner (None for `LLM_PROVIDER=none`). `breaker_table` shares the
    breaker across instances (e.g. `state_table(service, "breakers")`); None: local-only."""
    values = os.environ if env is None else env
    provider = values.get("LLM_PROVIDER", "none").strip().lower()
    if provider not in PROVIDERS:
        raise ConfigurationError(f"LLM_PROVIDER={provider!r}: use one of {', '.join(PROVIDERS)}")
    if provider == "none":
        return None
    if breaker_table is None:
        log.info("LLM breaker is local to this instance (no breaker table given)")
    ignored = [name for name in _OTHER_PROVIDERS[provider] if values.get(name, "").strip()]
    if ignored:
        log.warning("LLM_PROVIDER=%s ignores %s", provider, ", ".join(ignored))
    model = _model(provider, values)
    breaker = CircuitBreaker(f"llm-{provider}-{model.model}", table=breaker_table,
                             options=breaker_options(values), clock=clock)
    return Reasoner(model, breaker=breaker)


def _model(provider: str, values: Mapping[str, str]) -> OpenAIChatModel:
    timeout = _number(values, "LLM_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)
    retries = int(_number(values, "LLM_MAX_RETRIES", DEFAULT_RETRIES, integer=True))
    api_version = values.get("AZURE_OPENAI_API_VERSION") or DEFAULT_API_VERSION
    if provider == "openai_compatible":
        return openai_compatible(_required(values, "LLM_BASE_URL"),
                                 _required(values, "LLM_MODEL"),
                                 timeout=timeout, max_retries=retries)
    if provider == "local":
        endpoint = values.get("AZURE_OPENAI_ENDPOINT") or DEFAULT_LOCAL_ENDPOINT
        if urlsplit(endpoint).hostname not in _LOOPBACK:
            raise ConfigurationError(f"LLM_PROVIDER=local needs a loopback "
                                     f"AZURE_OPENAI_ENDPOINT (devstack), not {endpoint}")
        return azure_openai(endpoint, values.get("AZURE_OPENAI_DEPLOYMENT") or "local",
                            api_version=api_version, timeout=timeout, max_retries=retries,
                            token_provider=lambda: LOCAL_TOKEN)
    return azure_openai(_required(values, "AZURE_OPENAI_ENDPOINT"),
                        _required(values, "AZURE_OPENAI_DEPLOYMENT"),
                        api_version=api_version, timeout=timeout, max_retries=retries)


def breaker_options(values: Mapping[str, str]) -> BreakerOptions:
    """The LLM breaker: Polly's semantics, figures for a low call rate (a few per second).
    The probe's lease outlasts the longest call the SDK can make (every retry timing out), so
    it cannot expire while the probe is still running."""
    longest_call = (_number(values, "LLM_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)
                    * (1 + _number(values, "LLM_MAX_RETRIES", DEFAULT_RETRIES, integer=True)))
    try:
        return BreakerOptions(
            failure_ratio=_number(values, "LLM_BREAKER_FAILURE_RATIO", 0.5),
            minimum_throughput=int(_number(values, "LLM_BREAKER_MINIMUM_THROUGHPUT", 10,
                                           integer=True)),
            sampling_duration=_number(values, "LLM_BREAKER_SAMPLING_SECONDS", 30.0),
            break_duration=_number(values, "LLM_BREAKER_BREAK_SECONDS", 30.0),
            probe_timeout=max(30.0, longest_call + 5.0),
        )
    except ValueError as error:
        raise ConfigurationError(f"LLM_BREAKER_*: {error}") from error


def _required(values: Mapping[str, str], name: str) -> str:
    value = values.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"LLM_PROVIDER={values.get('LLM_PROVIDER')} needs {name}")
    return value


def _number(values: Mapping[str, str], name: str, default: float, *,
            integer: bool = False) -> float:
    text = values.get(name, "").strip()
    if not text:
        return default
    try:
        number = int(text) if integer else float(text)
    except ValueError:
        raise ConfigurationError(f"{name}={text!r} is not a{'n integer' if integer else ' number'}"
                                 ) from None
    if number < 0:
        raise ConfigurationError(f"{name}={text!r} must not be negative")
    return number
