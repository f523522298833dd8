"""`python -m devstack up` serves the local model endpoint and prints where."""

from __future__ import annotations

import re
import subprocess
import sys

from openai import AzureOpenAI

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
