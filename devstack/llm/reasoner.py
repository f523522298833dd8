"""The local model's deterministic reasoner: an answer valid for the requested JSON Schema,
chosen by simple rules over the prompt's input (same input, same answer; no model, no download).

Rules: an enum takes the option the input names, or whose hint words it contains most
(HINTS), else one picked by a hash of the input; numbers, booleans and strings take the input's
value under the same key when it fits; other strings summarise the input; arrays get their
minimum number of items (at least one); objects get every property.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

# Hint words for common enum options (helpdesk, risk, priority); any other option is matched
# by its own name only.
HINTS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice", "charge", "charged", "refund", "payment", "price", "bill"),
    "payments": ("invoice", "charge", "charged", "refund", "payment", "card"),
    "outage": ("down", "outage", "unavailable", "error", "crash", "cannot"),
    "platform": ("down", "outage", "unavailable", "error", "crash", "slow"),
    "account": ("login", "password", "sign in", "locked", "account"),
    "identity": ("login", "password", "sign in", "locked", "mfa"),
    "urgent": ("cannot", "down", "immediately", "outage", "urgent"),
    "high": ("charged twice", "asap", "broken", "fraud"),
    "low": ("question", "how do i", "feature", "idea"),
    "fraud": ("stolen", "unknown", "did not make", "fraud", "impossible"),
    "legitimate": ("usual", "regular", "known", "recurring"),
}
_WORDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9'.-]*")


def answer_for(schema: Mapping[str, Any], input_text: str) -> Any:
    """An instance of `schema` for the prompt input `input_text` (the last user message)."""
    try:
        parsed = json.loads(input_text)
    except ValueError:
        parsed = None
    values = _flatten(parsed) if isinstance(parsed, dict) else {}
    return _Instance(schema, input_text, values).build(schema, "answer")


def summary(input_text: str, limit: int = 200) -> str:
    words = _WORDS.findall(_prose(input_text))
    text = "Local reasoner: " + " ".join(words[:24]) if words else "Local reasoner: no input"
    return text[:limit]


def _prose(input_text: str) -> str:
    """The input's string values if it is JSON (so summaries read as text), else the text."""
    try:
        parsed = json.loads(input_text)
    except ValueError:
        return input_text
    if isinstance(parsed, dict | list):
        return " ".join(_strings(parsed))
    return input_text


def _strings(value: Any) -> list[str]:
    """Every string in a JSON value, in order, through objects and arrays alike."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, Mapping) else value if isinstance(
        value, list) else []
    return [text for item in items for text in _strings(item)]


def _flatten(value: Mapping[str, Any], into: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {} if into is None else into
    for key, item in value.items():
        if isinstance(item, Mapping):
            _flatten(item, out)
        else:
            out.setdefault(key.lower(), item)
    return out


class _Instance:
    def __init__(self, root: Mapping[str, Any], text: str, values: Mapping[str, Any]) -> None:
        self.root = root
        self.text = text
        self.lowered = _prose(text).lower()
        self.values = values

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            return self.resolve(target)
        return schema

    def build(self, schema: Mapping[str, Any], name: str) -> Any:
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.choose(list(schema["enum"]), name)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branches = [b for b in schema[key] if self.resolve(b).get("type") != "null"]
                return self.build((branches or schema[key])[0], name)
        kind = schema.get("type", "object" if "properties" in schema else "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        given = self.values.get(name.lower())
        if kind == "object":
            properties = schema.get("properties", {})
            return {key: self.build(child, key) for key, child in properties.items()}
        if kind == "array":
            count = max(int(schema.get("minItems", 1)), 1)
            count = min(count, int(schema.get("maxItems", count)))
            return [self.build(schema.get("items", {}), name) for _ in range(count)]
        if kind in ("integer", "number"):
            return self.number(schema, given, integer=kind == "integer")
        if kind == "boolean":
            return given if isinstance(given, bool) else False
        if kind == "null":
            return None
        return self.string(schema, given, name)

    def choose(self, options: list[Any], name: str) -> Any:
        def score(option: Any) -> int:
            if not isinstance(option, str):
                return 0
            words = (option.lower(), *HINTS.get(option.lower(), ()))
            return sum(self.lowered.count(word) for word in words)

        scores = [score(option) for option in options]
        if max(scores, default=0) > 0:
            return options[scores.index(max(scores))]
        digest = hashlib.sha256(f"{name}\n{self.text}".encode()).digest()
        return options[digest[0] % len(options)]

    def number(self, schema: Mapping[str, Any], given: Any, *, integer: bool) -> float | int:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if isinstance(given, int | float) and not isinstance(given, bool):
            value = float(given)
        elif low is not None and high is not None:
            value = (float(low) + float(high)) / 2
        else:
            value = float(low if low is not None else 0)
        if low is not None:
            value = max(value, float(low) + (1 if "exclusiveMinimum" in schema else 0))
        if high is not None:
            value = min(value, float(high) - (1 if "exclusiveMaximum" in schema else 0))
        return int(value) if integer else value

    def string(self, schema: Mapping[str, Any], given: Any, name: str) -> str:
        limit = int(schema.get("maxLength", 200))
        text = given if isinstance(given, str) and given else summary(self.text, limit)
        text = text[:limit]
        return text.ljust(int(schema.get("minLength", 0)), ".")
