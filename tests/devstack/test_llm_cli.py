"""`python -m devstack up` serves the local model endpoint and prints where."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from openai import AzureOpenAI

from devstack.__main__ import model_settings
from devstack.azurite import free_port


def test_up_serves_the_local_model_on_llm_port_and_prints_it() -> None:
    llm_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--port", "0", "--llm-port", str(llm_port)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        printed = ""
        for line in process.stdout:
            printed += line
            if line.startswith("local model endpoint:"):
                break
        match = re.search(r"local model endpoint: (http://\S+)", printed)
        assert match is not None and match.group(1) == f"http://127.0.0.1:{llm_port}"
        client = AzureOpenAI(azure_endpoint=match.group(1), api_version="2024-10-21",
                             azure_ad_token_provider=lambda: "local-token", max_retries=0)
        response = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hello"}])
        assert (response.choices[0].message.content or "").startswith("Local reasoner:")
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize(("configured", "pointed"), [
    ("", True), ("http://127.0.0.1:5081", True), ("https://acct.openai.azure.com/", False)])
def test_up_with_an_app_points_a_local_or_unset_model_endpoint_at_devstack(
        tmp_path: Path, configured: str, pointed: bool) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"Values": {"AZURE_OPENAI_ENDPOINT": configured}}))
    settings = model_settings(tmp_path, "http://127.0.0.1:6000")
    assert settings == ({"AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:6000"} if pointed else {})
