"""Tasks: prompt files next to their agent, answers checked against the task's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.backbone.errors import ConfigurationError
from agents.reasoning import InvalidAnswer, Task, load_task
from tests.unit.reasoning.support import PROMPTS, classify_ticket

VALID = {"category": "billing", "priority": "high", "team": "payments", "summary": "Refund."}


def test_a_task_is_loaded_from_the_agents_own_prompt_directory() -> None:
    task = load_task(PROMPTS, "classify-ticket")
    assert task.name == "classify-ticket"
    assert task.instructions.startswith("You triage helpdesk tickets.")
    assert task.schema["required"] == ["category", "priority", "team", "summary"]


def test_messages_carry_the_instructions_and_the_input_as_json() -> None:
    system, user = classify_ticket().messages({"subject": "Refund", "tier": "gold"})
    assert system == {"role": "system", "content": classify_ticket().instructions}
    assert json.loads(user["content"]) == {"subject": "Refund", "tier": "gold"}


def test_a_valid_answer_is_returned_as_a_dict() -> None:
    assert classify_ticket().parse(json.dumps(VALID)) == VALID


@pytest.mark.parametrize(("text", "says"), [
    ('{"category": "billing",', "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({**VALID, "priority": "whenever"}), "invalid at priority"),
    (json.dumps({k: v for k, v in VALID.items() if k != "team"}), "'team' is a required"),
])
def test_an_answer_that_is_not_valid_for_the_schema_is_an_invalid_answer(
        text: str, says: str) -> None:
    with pytest.raises(InvalidAnswer, match=says):
        classify_ticket().parse(text)


def test_a_missing_prompt_file_names_the_task_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"task nope: .*{tmp_path}"):
        load_task(tmp_path, "nope")


@pytest.mark.parametrize(("schema", "says"), [
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
     "additionalProperties: false"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": [],
      "additionalProperties": False}, "every property in required"),
    ({"type": "object", "properties": {}, "additionalProperties": False,
      "required": [], "minProperties": "two"}, "invalid JSON Schema"),
])
def test_a_schema_strict_structured_output_cannot_take_is_refused_at_load(
        schema: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Task("t", "x", schema)
