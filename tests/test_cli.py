"""The `labelstack` console script: verbs, help, exit codes, and the `python -m` forms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labelstack.cli import VERBS, cli

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_root_help_lists_every_verb_and_exit_codes():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output
    assert "Exit codes:" in result.output


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_verb_help_lists_exit_codes(verb):
    result = CliRunner().invoke(cli, [verb, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Exit codes" in result.output, f"`labelstack {verb} --help` names no exit codes"


def test_unknown_verb_is_a_usage_error():
    result = CliRunner().invoke(cli, ["deploy-everything"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_console_script_is_installed_and_help_is_light():
    """`labelstack --help` answers without importing pulumi, torch or Label Studio's SDK."""
    probe = (
        "import sys\n"
        "sys.argv = ['labelstack', '--help']\n"
        "from labelstack.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pulumi', 'torch', 'label_studio_sdk', 'numpy')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    script = BIN / "labelstack"
    assert script.exists(), "run `make setup`: it installs the console script"
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("labelstack ")


@pytest.mark.parametrize("module", ["infra.plan", "bootstrap", "backend", "policies",
                                    "labelstack"])
def test_python_m_forms_answer_help(module):
    """The `python -m` forms keep working, and none of them hangs (the pack's analyzer)."""
    r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout or "usage" in r.stdout.lower() or "Exit codes" in r.stdout
