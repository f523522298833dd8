"""Which Reasoner the settings build, and the clear errors for settings that cannot work."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agents.backbone.errors import ConfigurationError
from agents.reasoning import OpenAIChatModel, reasoner_from_settings


def test_provider_none_or_unset_means_no_reasoner() -> None:
    assert reasoner_from_settings({}) is None
    assert reasoner_from_settings({"LLM_PROVIDER": "none"}) is None


def test_an_unknown_provider_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="azure_openai, openai_compatible, local"):
        reasoner_from_settings({"LLM_PROVIDER": "bedrock"})


def test_azure_openai_needs_endpoint_and_deployment() -> None:
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        reasoner_from_settings({"LLM_PROVIDER": "azure_openai"})
    with pytest.raises(ConfigurationError, match="AZURE_OPENAI_DEPLOYMENT"):
        reasoner_from_settings({"LLM_PROVIDER": "azure_openai",
                                "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"})


def test_local_provider_only_talks_to_a_loopback_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        reasoner_from_settings({"LLM_PROVIDER": "local",
                                "AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"})


def test_openai_compatible_uses_base_url_and_model() -> None:
    reasoner = reasoner_from_settings({"LLM_PROVIDER": "openai_compatible",
                                       "LLM_BASE_URL": "http://localhost:11434/v1",
                                       "LLM_MODEL": "llama3.2"})
    assert reasoner is not None and isinstance(reasoner.model, OpenAIChatModel)
    assert reasoner.model.model == "llama3.2"
    assert reasoner.model.client().base_url == "http://localhost:11434/v1/"


def test_timeout_and_retries_reach_the_sdk_client() -> None:
    reasoner = reasoner_from_settings({"LLM_PROVIDER": "local", "LLM_TIMEOUT_SECONDS": "2.5",
                                       "LLM_MAX_RETRIES": "0"})
    assert reasoner is not None and isinstance(reasoner.model, OpenAIChatModel)
    client = reasoner.model.client()
    assert (client.timeout, client.max_retries) == (2.5, 0)


@pytest.mark.parametrize("setting", ["LLM_TIMEOUT_SECONDS", "LLM_BREAKER_FAILURE_RATIO"])
def test_a_malformed_number_names_its_setting(setting: str) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        reasoner_from_settings({"LLM_PROVIDER": "local", setting: "fast"})


def test_breaker_figures_come_from_settings() -> None:
    reasoner = reasoner_from_settings({"LLM_PROVIDER": "local",
                                       "LLM_BREAKER_MINIMUM_THROUGHPUT": "3",
                                       "LLM_BREAKER_BREAK_SECONDS": "7"})
    assert reasoner is not None and reasoner.breaker is not None
    assert (reasoner.breaker.options.minimum_throughput,
            reasoner.breaker.options.break_duration) == (3, 7.0)


def test_the_probe_lease_outlasts_every_sdk_attempt_timing_out() -> None:
    reasoner = reasoner_from_settings({"LLM_PROVIDER": "local", "LLM_TIMEOUT_SECONDS": "20",
                                       "LLM_MAX_RETRIES": "2"})
    assert reasoner is not None and reasoner.breaker is not None
    assert reasoner.breaker.options.probe_timeout > 60


def test_importing_the_port_loads_neither_openai_nor_azure_identity() -> None:
    code = ("import sys, agents.reasoning; "
            "r = agents.reasoning.reasoner_from_settings({'LLM_PROVIDER': 'local'}); "
            "print('openai' in sys.modules, 'azure.identity' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False False"


def test_a_setting_of_another_provider_is_named_in_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agents.reasoning"):
        reasoner_from_settings({"LLM_PROVIDER": "local", "LLM_BASE_URL": "http://x/v1",
                                "LLM_MODEL": ""})
    assert "LLM_PROVIDER=local ignores LLM_BASE_URL" in caplog.text


def test_the_sample_settings_build_the_local_reasoner() -> None:
    values = json.loads((Path(__file__).parents[3] / "local.settings.sample.json").read_text())
    reasoner = reasoner_from_settings(values["Values"])
    assert reasoner is not None and isinstance(reasoner.model, OpenAIChatModel)
    assert str(reasoner.model.client().base_url).startswith("http://127.0.0.1:5081/openai")
