"""The two files `func start` reads: local.settings.json (app settings) and host.json."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import json5

_SETTING_EXPRESSION = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


class SettingsError(ValueError):
    """A setting the app needs is missing or malformed."""


def parse_timespan(text: str) -> timedelta:
    """A .NET TimeSpan as host.json and retry policies write it: `[d.]hh:mm:ss[.fffffff]`."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise SettingsError(f"not a TimeSpan (expected [d.]hh:mm:ss[.fffffff]): {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )


@dataclass(frozen=True)
class AppSettings:
    """App settings: local.settings.json `Values` over the process environment, as on Azure."""

    values: Mapping[str, str]

    @classmethod
    def load(cls, app_dir: Path, environ: Mapping[str, str] | None = None) -> AppSettings:
        merged = dict(os.environ if environ is None else environ)
        local = app_dir / "local.settings.json"
        if local.exists():
            document = json.loads(local.read_text(encoding="utf-8"))
            if document.get("IsEncrypted"):
                raise SettingsError(f"{local}: encrypted settings are not supported locally")
            values = document.get("Values", {})
            # As with `func start`, the process environment wins over the file.
            merged = {**{k: str(v) for k, v in values.items()}, **merged}
            host = document.get("Host", {})
            if "LocalHttpPort" in host:
                merged.setdefault("DEVSTACK_HOST_HTTP_PORT", str(host["LocalHttpPort"]))
        return cls(values=merged)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def require(self, name: str, *, purpose: str) -> str:
        value = self.values.get(name)
        if not value:
            raise SettingsError(f"app setting {name!r} ({purpose}) is not set")
        return value

    def resolve(self, expression: str) -> str:
        """Replace each `%NAME%` binding expression with the app setting NAME."""

        def lookup(match: re.Match[str]) -> str:
            return self.require(match.group(1), purpose=f"binding expression {expression!r}")

        return _SETTING_EXPRESSION.sub(lookup, expression)

    def connection(self, name: str) -> str:
        """The connection string a binding's `connection` names (locally: a connection string)."""
        value = self.values.get(name) or self.values.get(f"ConnectionStrings:{name}")
        if not value:
            raise SettingsError(
                f"connection setting {name!r} is not set; locally it holds a connection string"
            )
        return value

    def export(self) -> dict[str, str | None]:
        """Make every setting an environment variable, as the Functions host does for workers.

        Returns the previous values, for `restore` when the host stops.
        """
        previous = {name: os.environ.get(name) for name in self.values}
        os.environ.update(self.values)
        return previous


def restore_environment(previous: Mapping[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass(frozen=True)
class HostConfig:
    """host.json: the trigger extensions' options and the HTTP route prefix."""

    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, app_dir: Path) -> HostConfig:
        path = app_dir / "host.json"
        if not path.exists():
            return cls()
        document = json5.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise SettingsError(f"{path}: expected a JSON object")
        return cls(document=document)

    def extension(self, name: str) -> Mapping[str, Any]:
        """`extensions.<name>` matched case-insensitively, as the host binds options."""
        extensions = self.document.get("extensions", {})
        for key, value in extensions.items():
            if key.lower() == name.lower() and isinstance(value, dict):
                return value
        return {}

    @property
    def route_prefix(self) -> str:
        prefix = self.extension("http").get("routePrefix", "api")
        return str(prefix).strip("/")


def option(options: Mapping[str, Any], name: str, default: Any) -> Any:
    """One host.json option, matched case-insensitively as the host's options binder does."""
    for key, value in options.items():
        if key.lower() == name.lower():
            return value
    return default
