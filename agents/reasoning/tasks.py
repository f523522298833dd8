"""A task is a prompt file plus the JSON Schema its answer must match, kept next to the agent
that owns them: `load_task(Path(__file__).parent / "prompts", "explain-risk")` reads
`explain-risk.md` (the instructions) and `explain-risk.schema.json`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from agents.backbone.errors import ConfigurationError
from agents.reasoning.errors import InvalidAnswer

Message = dict[str, str]


@dataclass(frozen=True)
class Task:
    """`name` is also the json_schema name sent to the model (letters, digits, - and _)."""

    name: str
    instructions: str
    schema: Mapping[str, Any]
    _validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            Draft202012Validator.check_schema(self.schema)
        except SchemaError as error:
            raise ConfigurationError(f"task {self.name}: invalid JSON Schema: {error.message}"
                                     ) from error
        _check_strict(self.name, self.schema, "$")
        object.__setattr__(self, "_validator", Draft202012Validator(self.schema))

    def messages(self, input: Mapping[str, Any]) -> list[Message]:
        """The instructions as the system message, the input as one JSON user message."""
        return [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": json.dumps(input, sort_keys=True, default=str)},
        ]

    def parse(self, text: str) -> dict[str, Any]:
        """The model's text as a dict valid for the schema, else InvalidAnswer."""
        try:
            answer = json.loads(text)
        except ValueError as error:
            raise InvalidAnswer(f"task {self.name}: answer is not JSON: {error}") from error
        if not isinstance(answer, dict):
            raise InvalidAnswer(f"task {self.name}: answer is not a JSON object")
        errors = sorted(self._validator.iter_errors(answer), key=lambda e: list(e.path))
        if errors:
            where = "/".join(map(str, errors[0].path)) or "(root)"
            raise InvalidAnswer(f"task {self.name}: answer invalid at {where}: "
                                f"{errors[0].message}")
        return answer


def _check_strict(task: str, schema: Mapping[str, Any], where: str) -> None:
    """Structured outputs with `strict: true` accept only closed objects whose properties are
    all required: refuse any other schema at load time rather than at the first call."""
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            raise ConfigurationError(f"task {task}: {where} needs additionalProperties: false "
                                     "(strict structured output)")
        if set(schema.get("required", [])) != set(properties):
            raise ConfigurationError(f"task {task}: {where} must list every property in "
                                     "required (strict structured output)")
        for key, child in properties.items():
            _check_strict(task, child, f"{where}.{key}")
    if isinstance(schema.get("items"), Mapping):
        _check_strict(task, schema["items"], f"{where}[]")


def load_task(directory: str | Path, name: str) -> Task:
    """The task `name` from an agent's prompt directory (`<name>.md`, `<name>.schema.json`)."""
    folder = Path(directory)
    try:
        instructions = (folder / f"{name}.md").read_text(encoding="utf-8").strip()
        schema = json.loads((folder / f"{name}.schema.json").read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"task {name}: cannot read its prompt files in {folder}: "
                                 f"{error.strerror}") from error
    except ValueError as error:
        raise ConfigurationError(f"task {name}: {name}.schema.json is not JSON: {error}"
                                 ) from error
    return Task(name, instructions, schema)
