"""Every Bicep file parses offline (there is no Bicep CLI here): pycep-parser turns it into the
dict the other infra tests read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycep import BicepParser

from tests.infra import templates


def test_infra_has_main_and_modules() -> None:
    names = {path.relative_to(templates.INFRA).as_posix() for path in templates.bicep_files()}

    assert "main.bicep" in names
    assert any(name.startswith("modules/") for name in names)


@pytest.mark.parametrize("path", templates.bicep_files(), ids=lambda path: path.name)
def test_bicep_file_parses(path: Path) -> None:
    parsed = BicepParser().parse(file_path=path)

    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


def test_parser_rejects_broken_bicep() -> None:
    with pytest.raises(Exception):  # noqa: B017  # lark raises several error types
        BicepParser().parse(
            text="resource broken 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        )
