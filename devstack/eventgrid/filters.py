"""Which events a subscription receives: event types, subject prefix/suffix, advanced filters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from devstack.eventgrid.config import AdvancedFilter, EventFilter

_MISSING = object()


def event_type(event: Mapping[str, Any]) -> str:
    return str(event.get("type") or event.get("eventType") or "")


def _value(event: Mapping[str, Any], key: str) -> Any:
    node: Any = event
    for part in key.split("."):
        if not isinstance(node, Mapping):
            return _MISSING
        # Event Grid keys are matched case-insensitively.
        match = next((k for k in node if k.lower() == part.lower()), None)
        if match is None:
            return _MISSING
        node = node[match]
    return node


def _text(values: tuple[Any, ...]) -> list[str]:
    return [str(v).lower() for v in values]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


_STRING: dict[str, Callable[[str, list[str]], bool]] = {
    "StringIn": lambda v, vs: v in vs,
    "StringNotIn": lambda v, vs: v not in vs,
    "StringBeginsWith": lambda v, vs: any(v.startswith(x) for x in vs),
    "StringNotBeginsWith": lambda v, vs: not any(v.startswith(x) for x in vs),
    "StringEndsWith": lambda v, vs: any(v.endswith(x) for x in vs),
    "StringNotEndsWith": lambda v, vs: not any(v.endswith(x) for x in vs),
    "StringContains": lambda v, vs: any(x in v for x in vs),
    "StringNotContains": lambda v, vs: not any(x in v for x in vs),
}
_NUMBER: dict[str, Callable[[float, list[float]], bool]] = {
    "NumberIn": lambda v, vs: v in vs,
    "NumberNotIn": lambda v, vs: v not in vs,
    "NumberGreaterThan": lambda v, vs: v > vs[0],
    "NumberGreaterThanOrEquals": lambda v, vs: v >= vs[0],
    "NumberLessThan": lambda v, vs: v < vs[0],
    "NumberLessThanOrEquals": lambda v, vs: v <= vs[0],
}


def _advanced(rule: AdvancedFilter, event: Mapping[str, Any]) -> bool:
    value = _value(event, rule.key)
    if rule.operator == "IsNullOrUndefined":
        return value is _MISSING or value is None
    if rule.operator == "IsNotNull":
        return value is not _MISSING and value is not None
    if value is _MISSING:
        return rule.operator.startswith(("StringNot", "NumberNotIn"))
    if rule.operator == "BoolEquals":
        return value is rule.values[0]
    if rule.operator in _STRING:
        return isinstance(value, str) and _STRING[rule.operator](value.lower(),
                                                                 _text(rule.values))
    if rule.operator in _NUMBER:
        number = _number(value)
        return number is not None and _NUMBER[rule.operator](
            number, [float(v) for v in rule.values])
    raise ValueError(f"unsupported advanced filter operator {rule.operator!r}")


def matches(event_filter: EventFilter, event: Mapping[str, Any]) -> bool:
    if event_filter.included_event_types and event_type(event).lower() not in {
            t.lower() for t in event_filter.included_event_types}:
        return False
    subject = str(event.get("subject") or "")
    begins, ends = event_filter.subject_begins_with, event_filter.subject_ends_with
    if not event_filter.subject_case_sensitive:
        subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
    if not (subject.startswith(begins) and subject.endswith(ends)):
        return False
    return all(_advanced(rule, event) for rule in event_filter.advanced)
