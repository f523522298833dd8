"""HTTP trigger route templates (`orders/{id:int}`, `files/{*path}`, `items/{id?}`) as regexes.

Written by hand: aiohttp's router knows neither ASP.NET constraints nor optional segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAMETER = re.compile(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([^}?]+))?(\?)?\}")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "datetime": r"[0-9T:\-\.Z+]+",
}


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, prefix: str, route: str) -> RouteTemplate:
        template = "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)
        regex = ""
        position = 0
        for match in _PARAMETER.finditer(template):
            literal = template[position:match.start()]
            catch_all, name, constraint, optional = match.groups()
            segment = r".*" if catch_all else _constraint(constraint)
            group = f"(?P<{name}>{segment})"
            if optional or catch_all:
                # An optional last segment may be absent together with its slash.
                if literal.endswith("/"):
                    regex += re.escape(literal[:-1]) + f"(?:/{group})?"
                else:
                    regex += re.escape(literal) + f"{group}?"
            else:
                regex += re.escape(literal) + group
            position = match.end()
        regex += re.escape(template[position:])
        return cls(template, re.compile(f"^/{regex}/?$", re.IGNORECASE))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.match(path)
        if found is None:
            return None
        return {key: value for key, value in found.groupdict().items() if value is not None}


def _constraint(constraint: str | None) -> str:
    if constraint is None:
        return r"[^/]+"
    if constraint.startswith("regex(") and constraint.endswith(")"):
        return f"(?:{constraint[6:-1]})"
    known = _CONSTRAINTS.get(constraint.split("(")[0].lower())
    if known is None:
        raise ValueError(f"unsupported route constraint {constraint!r}")
    return known
