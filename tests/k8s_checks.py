"""checkov on rendered Kubernetes objects, shared by the chart and Job tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

CHECKOV = Path(__file__).resolve().parent.parent / ".venvs" / "checkov" / "bin" / "checkov"


def run_checkov(objs: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    """checkov's JSON report (``summary``, ``results``) for ``objs``; waivers are the
    objects' own ``checkov.io/skipN`` annotations, reported as skipped checks."""
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objs))
    run = subprocess.run([str(CHECKOV), "--framework", "kubernetes", "-f", str(manifest),
                          "--skip-download", "-o", "json", "--compact"], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    return json.loads(run.stdout)


def failed_and_skipped(report: dict[str, Any]) -> tuple[list[tuple[str, str]], set[str]]:
    """(check id, resource) of failed checks, and the ids of skipped (waived) ones."""
    results = report["results"]
    return ([(c["check_id"], c["resource"]) for c in results.get("failed_checks", [])],
            {c["check_id"] for c in results.get("skipped_checks", [])})
