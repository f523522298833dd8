"""The offline checkov scan of infra/ (Bicep framework) has no failed check and no parsing error;
the checks it skips are listed with a reason in infra/.checkov.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.templates import INFRA, REPO

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CONFIG = INFRA / ".checkov.yaml"


def _checkov(*args: str) -> dict[str, Any]:
    if not CHECKOV.exists():
        message = f"{CHECKOV} is missing: run `make checkov`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    run = subprocess.run(
        [str(CHECKOV), "--config-file", str(CONFIG), "-o", "json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    report: dict[str, Any] = json.loads(run.stdout)
    return report


def test_checkov_scan_of_infra_has_no_failed_checks_and_no_parsing_errors() -> None:
    report = _checkov("-d", str(INFRA))
    summary = report["summary"]
    failed = [
        f"{check['check_id']} {check['file_path']} {check['resource']}"
        for check in report["results"]["failed_checks"]
    ]

    assert summary["parsing_errors"] == 0, report["results"]["parsing_errors"]
    assert failed == []
    assert summary["passed"] > 0
    assert summary["resource_count"] > 0


def test_checkov_fails_a_template_that_breaks_a_rule(tmp_path: Path) -> None:
    weak = tmp_path / "weak.bicep"
    weak.write_text(
        "resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        "  name: 'weak'\n"
        "  location: 'westeurope'\n"
        "  kind: 'StorageV2'\n"
        "  sku: {\n"
        "    name: 'Standard_GRS'\n"
        "  }\n"
        "  properties: {\n"
        "    minimumTlsVersion: 'TLS1_0'\n"
        "  }\n"
        "}\n"
    )

    report = _checkov("-f", str(weak))

    assert report["summary"]["parsing_errors"] == 0
    assert "CKV_AZURE_44" in {check["check_id"] for check in report["results"]["failed_checks"]}


def test_a_missing_checkov_install_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CHECKOV", tmp_path / "missing" / "checkov")
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="make checkov"):
        _checkov("-d", str(INFRA))


def test_every_skipped_check_has_a_reason() -> None:
    skipped = yaml.safe_load(CONFIG.read_text())["skip-check"]
    lines = CONFIG.read_text().splitlines()

    assert skipped, "the skip list is empty; drop this test with it"
    for check in skipped:
        [number] = [n for n, line in enumerate(lines) if line.strip().startswith(f"- {check}")]
        reason_above = lines[number - 1].lstrip().startswith("#")
        assert "#" in lines[number] or reason_above, f"{check} is skipped without a reason"
