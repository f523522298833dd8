"""Where a receiver starts: the source filter the SDKs send, parsed.

The SDKs express the start as `apache.org:selector-filter:string` with text such as
`amqp.annotation.x-opt-offset > '-1'`; this is the only grammar they use, so a regular
expression covers it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

SELECTOR_FILTER = "apache.org:selector-filter:string"

START_OF_STREAM = "-1"
END_OF_STREAM = "@latest"

_SELECTOR = re.compile(
    r"^\s*amqp\.annotation\.x-opt-(?P<field>offset|sequence-number|enqueued-time)\s*"
    r"(?P<operator>>=|>)\s*'(?P<value>[^']*)'\s*$"
)


class PositionField(Enum):
    OFFSET = "offset"
    SEQUENCE_NUMBER = "sequence-number"
    ENQUEUED_TIME = "enqueued-time"


class InvalidSelector(ValueError):
    """A receiver asked for a start position this service does not understand."""


@dataclass(frozen=True)
class StartPosition:
    """A start position: events after (or at, when inclusive) `value` of `field`."""

    field: PositionField
    value: int | str
    inclusive: bool = False

    @classmethod
    def from_selector(cls, selector: str) -> StartPosition:
        match = _SELECTOR.match(selector)
        if match is None:
            raise InvalidSelector(f"unsupported selector filter: {selector!r}")
        field = PositionField(match["field"])
        inclusive = match["operator"] == ">="
        text = match["value"]
        if field is PositionField.OFFSET:
            if text not in (START_OF_STREAM, END_OF_STREAM) and not text.isdigit():
                raise InvalidSelector(f"offset must be a number, -1 or @latest: {text!r}")
            return cls(field, text, inclusive)
        try:
            return cls(field, int(text), inclusive)
        except ValueError as error:
            raise InvalidSelector(f"{field.value} must be an integer: {text!r}") from error


FROM_START = StartPosition(PositionField.OFFSET, START_OF_STREAM)
