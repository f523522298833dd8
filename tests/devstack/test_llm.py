"""devstack's local model endpoint, driven by the official openai SDK in both REST shapes."""

from __future__ import annotations

import json
import urllib.request

import jsonschema
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from devstack.llm import LocalModelServer
from devstack.llm.reasoner import summary
from tests.unit.reasoning.support import FakeClock, classify_ticket

API_VERSION = "2024-10-21"
TICKET = {"subject": "Charged twice", "body": "My card was charged twice for one invoice.",
          "tier": "gold"}


def azure(server: LocalModelServer, deployment: str = "chat", **options: object) -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=server.base_url, azure_deployment=deployment,
                       api_version=API_VERSION, azure_ad_token_provider=lambda: "local-token",
                       **options)  # type: ignore[arg-type]


def ask(client: OpenAI, model: str = "chat", input: dict[str, str] = TICKET) -> str:
    task = classify_ticket()
    response = client.chat.completions.create(
        model=model, messages=task.messages(input),  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {
            "name": task.name, "schema": dict(task.schema), "strict": True}})
    return response.choices[0].message.content or ""


def test_azure_shape_answers_an_instance_valid_for_the_requested_schema(
        local_model: LocalModelServer) -> None:
    answer = json.loads(ask(azure(local_model)))
    jsonschema.validate(answer, classify_ticket().schema)
    assert (answer["category"], answer["team"]) == ("billing", "payments")


def test_openai_shape_answers_by_model_name_and_reports_token_usage(
        local_model: LocalModelServer) -> None:
    client = OpenAI(base_url=local_model.openai_base_url, api_key="unused")
    task = classify_ticket()
    response = client.chat.completions.create(
        model="llama3.2", messages=task.messages(TICKET),  # type: ignore[arg-type]
        response_format={"type": "json_schema", "json_schema": {
            "name": task.name, "schema": dict(task.schema), "strict": True}})
    jsonschema.validate(json.loads(response.choices[0].message.content or ""), task.schema)
    assert response.model == "llama3.2"
    assert response.usage is not None and response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == (response.usage.prompt_tokens
                                           + response.usage.completion_tokens)
    assert local_model.requests["llama3.2"] == 1


def test_the_same_input_gets_the_same_answer_and_another_input_its_own(
        local_model: LocalModelServer) -> None:
    client = azure(local_model)
    outage = {"subject": "Site down", "body": "The portal is down, we cannot work.",
              "tier": "gold"}
    assert ask(client) == ask(client)
    answer = json.loads(ask(client, input=outage))
    assert (answer["category"], answer["priority"]) == ("outage", "urgent")


def test_azure_shape_needs_an_api_version_and_a_credential(
        local_model: LocalModelServer) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    url = f"{local_model.base_url}/openai/deployments/chat/chat/completions"
    for target, status in ((url, 400), (f"{url}?api-version={API_VERSION}", 401)):
        request = urllib.request.Request(target, body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == status


def test_throttle_answers_429_with_retry_after_headers(local_model: LocalModelServer) -> None:
    local_model.faults.throttle(retry_after=1.5, deployment="chat")
    with pytest.raises(openai.RateLimitError) as throttled:
        ask(azure(local_model, max_retries=0))
    headers = throttled.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("2", "1500")


def test_the_sdk_retries_a_throttled_request_after_retry_after_ms(
        local_model: LocalModelServer) -> None:
    local_model.faults.throttle(retry_after=0.05, deployment="chat")
    jsonschema.validate(json.loads(ask(azure(local_model, max_retries=1))),
                        classify_ticket().schema)
    assert local_model.requests["chat"] == 2


@pytest.mark.parametrize("status", [500, 503])
def test_error_faults_answer_their_status(local_model: LocalModelServer, status: int) -> None:
    local_model.faults.error(status, deployment="chat")
    with pytest.raises(openai.InternalServerError) as failed:
        ask(azure(local_model, max_retries=0))
    assert failed.value.status_code == status


def test_hang_holds_the_request_until_the_client_times_out(
        local_model: LocalModelServer) -> None:
    local_model.faults.hang(deployment="chat")
    with pytest.raises(openai.APITimeoutError):
        ask(azure(local_model, max_retries=0, timeout=0.3))
    jsonschema.validate(json.loads(ask(azure(local_model))), classify_ticket().schema)


def test_malformed_and_wrong_schema_faults_answer_200_with_unusable_content(
        local_model: LocalModelServer) -> None:
    local_model.faults.malformed(deployment="chat")
    local_model.faults.wrong_schema(deployment="chat")
    with pytest.raises(ValueError):
        json.loads(ask(azure(local_model)))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads(ask(azure(local_model))), classify_ticket().schema)


def test_faults_hit_only_their_deployment(local_model: LocalModelServer) -> None:
    local_model.faults.error(503, deployment="other", times=5)
    jsonschema.validate(json.loads(ask(azure(local_model, "chat"))), classify_ticket().schema)
    with pytest.raises(openai.InternalServerError):
        ask(azure(local_model, "other", max_retries=0))


def test_an_outage_lasts_its_seconds_on_the_servers_clock() -> None:
    clock = FakeClock()
    with LocalModelServer(port=0, clock=clock) as server:
        server.faults.outage(30, deployment="chat")
        clock.advance(29.9)
        with pytest.raises(openai.InternalServerError) as down:
            ask(azure(server, max_retries=0))
        assert down.value.status_code == 503
        clock.advance(0.1)
        jsonschema.validate(json.loads(ask(azure(server))), classify_ticket().schema)


def test_faults_are_armed_over_http_too(local_model: LocalModelServer) -> None:
    arm = urllib.request.Request(
        f"{local_model.base_url}/faults/error?status=503&deployment=chat&times=1",
        method="POST")
    with urllib.request.urlopen(arm, timeout=5) as answer:
        assert json.load(answer) == {"armed": "error"}
    with pytest.raises(openai.InternalServerError):
        ask(azure(local_model, max_retries=0))
    clear = urllib.request.Request(f"{local_model.base_url}/faults/clear", method="POST")
    urllib.request.urlopen(clear, timeout=5).close()
    ask(azure(local_model, max_retries=0))


def test_a_summary_reads_the_strings_inside_arrays_of_the_input():
    text = json.dumps({"amountCents": 95000, "rules": [
        {"name": "velocity", "score": 40, "detail": "6 payments in 10 minutes"}]})
    assert summary(text) == "Local reasoner: velocity 6 payments in 10 minutes"
