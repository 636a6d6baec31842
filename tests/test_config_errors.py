"""Config mistakes fail loudly: exit 2 with one line per problem naming the key (or file,
line and column) and the fix; never a traceback, never a silent default."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import offline, stack_file
from infra.config import ConfigError

GOOD = "config:\n  aws:region: us-east-1\n  labelstack:profile: dev\n"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A throwaway ``Pulumi.<name>.yaml`` next to the shipped ones (removed afterwards)."""
    name = f"cfgtest-{uuid.uuid4().hex[:8]}"
    path = offline.ROOT / f"Pulumi.{name}.yaml"
    try:
        yield name, path
    finally:
        path.unlink(missing_ok=True)


def _plan(name: str, *args: str, cli: str = "module") -> subprocess.CompletedProcess[str]:
    cmd = ([sys.executable, "-m", "infra.plan"] if cli == "module"
           else [str(Path(sys.executable).with_name("labelstack")), "plan"])
    return subprocess.run([*cmd, "--stack", name, *args], capture_output=True, text=True,
                          timeout=300, cwd=offline.ROOT, env={"COLUMNS": "200", "PATH": ""})


def _read(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text)
    return stack_file.read(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("config:\n  aws:regoin: us-east-1\n",
     "aws:regoin: unknown key (did you mean aws:region?); fix the spelling or remove it"),
    ("config:\n  labelstack:egresMode: nat\n",
     "labelstack:egresMode: unknown key (did you mean labelstack:egressMode?)"),
    ("config:\n  labelstak:profile: dev\n",
     "labelstak:profile: unknown namespace 'labelstak' (did you mean labelstack?)"),
    ("config:\n  aws:frobnicate: 1\n",
     "aws:frobnicate: unknown key; not one of the pulumi-aws provider's config keys"),
    ("config:\n  profile: dev\n",
     "profile: a key without namespace; write labelstack:profile or aws:profile"),
    ("config:\n  aws:secretKey: wJalrXUtnFEMI\n",
     "aws:secretKey: a credential in plaintext; store it encrypted with `pulumi config set "
     "--secret aws:secretKey <value>`"),
])
def test_each_key_mistake_is_one_line_naming_key_and_fix(tmp_path, text, expected) -> None:
    with pytest.raises(ConfigError) as exc:
        _read(tmp_path, text)
    lines = str(exc.value).splitlines()
    assert lines[0] == "Pulumi.x.yaml: invalid stack configuration:"
    assert len(lines) == 2 and expected in lines[1]


def test_all_mistakes_are_reported_at_once(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        _read(tmp_path, "config:\n  aws:regoin: x\n  labelstack:profil: dev\n"
                        "  aws:token: t\nlabelstack:owner: me\n")
    found = [line.strip() for line in str(exc.value).splitlines()[1:]]
    assert [":".join(line.split(":")[:2]) for line in found] == [
        "labelstack:owner", "aws:regoin", "labelstack:profil", "aws:token"]
    assert "indent it under `config:`" in found[0]


def test_secrets_and_engine_keys_pass(tmp_path) -> None:
    config = _read(tmp_path, GOOD + "  aws:secretKey:\n    secure: AAABAJ0c2VjcmV0\n"
                              "  pulumi:tags:\n    team: x\n  aws:defaultTags:\n    tags: {}\n")
    assert config["aws:secretKey"] == stack_file.SECRET_PLACEHOLDER
    assert config["labelstack:profile"] == "dev"


def test_provider_keys_come_from_the_installed_provider() -> None:
    keys = stack_file.provider_keys()
    assert {"region", "profile", "assumeRoles", "defaultTags", "secretKey"} <= keys
    assert "regoin" not in keys


@pytest.mark.parametrize(("text", "expected"), [
    ("aws:region: us-east-1\nlabelstack:profile: prod\n",
     "no top-level `config:` mapping; aws:region, labelstack:profile must be indented under it"),
    ("# nothing here\n", "no top-level `config:` mapping; start the file with `config:`"),
    ("config:\n  - labelstack:profile\n", "`config:` holds list, not a mapping"),
])
def test_missing_config_mapping(tmp_path, text, expected) -> None:
    with pytest.raises(ConfigError, match=r"Pulumi\.x\.yaml: ") as exc:
        _read(tmp_path, text)
    assert expected in str(exc.value)


def test_yaml_error_names_file_line_and_column(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        _read(tmp_path, "config:\n  aws:region: us-east-1\n   labelstack:profile: prod\n")
    assert str(exc.value).startswith("Pulumi.x.yaml:3:22: YAML syntax error: mapping values "
                                     "are not allowed here")
    with pytest.raises(ConfigError, match=r"Pulumi.x.yaml:3:1: YAML syntax error: .*flow "):
        _read(tmp_path, "config:\n  labelstack:sourceProjects: [a,\n")


def test_set_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"aws:regoin: unknown key \(did you mean "
                                          r"aws:region\?\)"):
        offline.stack_config("dev", {"aws:regoin": "us-east-1"})
    with pytest.raises(ConfigError, match=r'labelstack:egresMode: got "nat"; unknown key; '
                                          r"did you mean labelstack:egressMode\?"):
        offline.run("dev", {"egresMode": "nat"})
    with pytest.raises(ConfigError, match="aws:accessKey: a credential in plaintext"):
        offline.stack_config("dev", {"aws:accessKey": "AKIA0000"})


def test_shipped_stacks_are_clean() -> None:
    paths = [p for p in sorted(offline.ROOT.glob("Pulumi.*.yaml"))
             if not p.name.startswith("Pulumi.cfgtest-")]
    assert len(paths) >= 4, paths  # dev, staging, prod, ephemeral
    for path in paths:
        stack_file.read(path)  # raises on any mistake


@pytest.mark.parametrize(("text", "stderr"), [
    ("config:\n  aws:regoin: us-east-1\n", "aws:regoin: unknown key (did you mean aws:region?)"),
    ("aws:region: us-east-1\nlabelstack:profile: prod\n", "no top-level `config:` mapping"),
    ("config:\n  aws:region: [us-east-1\n", "YAML syntax error"),
    ("config:\n  aws:token: plain\n", "aws:token: a credential in plaintext"),
])
def test_plan_exits_2_without_traceback(stack, text, stderr) -> None:
    name, path = stack
    path.write_text(text)
    out = _plan(name)
    assert out.returncode == 2, out.stdout + out.stderr
    assert stderr in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert not out.stdout.strip()


def test_labelstack_plan_exits_2_on_a_misspelled_value_key(stack) -> None:
    name, path = stack
    path.write_text(GOOD + "  labelstack:egresMode: nat\n")
    out = _plan(name, cli="labelstack")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "labelstack:egresMode: unknown key (did you mean labelstack:egressMode?)" in out.stderr
