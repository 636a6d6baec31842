"""No secret value in plaintext in any resource input, stack output or stack file.

The database master password is generated, held and rotated by RDS in Secrets Manager
(``manageMasterUserPassword``); the plan may name where a secret lives (an ARN, a Secret
name) but never hold one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from infra.offline import ROOT, Plan, PlannedResource
from tests.compute_helpers import RDS, one

#: Keys whose value would be a secret.
SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|private_?key|credential|api_?key",
                        re.IGNORECASE)
#: Keys that match but hold no secret: where a secret lives, or a setting (IMDS token mode).
REFERENCE_KEYS = {"secretName", "secretArn", "masterUserSecretKmsKeyId", "httpTokens",
                  # which key of a Kubernetes Secret to read (Helm values, ExternalSecret)
                  "secretKey",
                  # a switch ("true"), not a token: Label Studio accepts legacy tokens
                  "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"}
#: Values that are secrets whatever their key.
SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\b(AKIA|ASIA)[0-9A-Z]{16}\b")


def _is_reference(value: Any) -> bool:
    return isinstance(value, bool) or value is None or value == "" or (
        isinstance(value, str) and value.startswith("arn:"))


def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, leaf) in a value, descending into JSON documents held in strings."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
        return
    if isinstance(value, str) and value[:1] in "{[":
        try:
            yield from _walk(json.loads(value), f"{path}<json>")
            return
        except ValueError:
            pass
    yield path, value


def leaks(value: Any, where: str) -> list[str]:
    """Paths under ``where`` that hold a plaintext secret."""
    found = []
    for path, leaf in _walk(value, where):
        key = re.split(r"[.\[<]", path.rsplit(".", 1)[-1])[0]
        by_key = (SECRET_KEY.search(key) and key not in REFERENCE_KEYS
                  and not _is_reference(leaf))
        by_value = isinstance(leaf, str) and SECRET_VALUE.search(leaf)
        if by_key or by_value:
            found.append(path)
    # name/value pairs (container env, Helm sets): {"name": "DB_PASSWORD", "value": "..."}
    for path, leaf in _walk(value, where):
        if path.endswith(".name") and isinstance(leaf, str) and SECRET_KEY.search(leaf) \
                and leaf not in REFERENCE_KEYS:
            parent = _lookup(value, path.removeprefix(where).rsplit(".", 1)[0])
            if isinstance(parent, dict) and not _is_reference(parent.get("value")):
                found.append(f"{path.rsplit('.', 1)[0]}.value")
    return found


def _lookup(value: Any, path: str) -> Any:
    for part in re.findall(r"\.([^.\[<]+)|\[(\d+)\]|<json>", path):
        if part == ("", ""):
            value = json.loads(value)
        elif part[1]:
            value = value[int(part[1])]
        else:
            value = value[part[0]]
    return value


def test_no_secret_in_any_resource_input(each_stack: Plan) -> None:
    found = [p for r in each_stack.resources for p in leaks(r.inputs, f"{r.type}::{r.name}")]
    assert found == []


def test_no_secret_in_stack_outputs(each_stack: Plan) -> None:
    assert leaks(each_stack.outputs, "outputs") == []
    assert each_stack.outputs["dbSecretArn"].startswith("arn:")  # a pointer, not the value


def test_no_plaintext_secret_in_stack_files() -> None:
    """Secret-looking keys are Pulumi ``secure:`` values or absent; their declared defaults
    in Pulumi.yaml are empty."""
    declared = yaml.safe_load((ROOT / "Pulumi.yaml").read_text()).get("config") or {}
    for key, spec in declared.items():
        if SECRET_KEY.search(key.split(":")[-1]) and key not in REFERENCE_KEYS:
            assert not (spec or {}).get("default"), key
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        for key, value in config.items():
            if SECRET_KEY.search(key.split(":")[-1]):
                assert isinstance(value, dict) and "secure" in value, f"{path.name}: {key}"
        assert leaks({k: v for k, v in config.items() if not isinstance(v, dict)},
                     path.name) == []
        assert not SECRET_VALUE.search(path.read_text()), path.name


def test_database_has_no_master_password_input(each_stack: Plan) -> None:
    db = one(each_stack, RDS).inputs
    assert db["manageMasterUserPassword"] is True
    assert not {k for k in db if k.lower().startswith(("password", "masterpassword"))}


@pytest.mark.parametrize("inputs,path", [
    ({"masterPassword": "hunter2"}, "r.masterPassword"),
    ({"password": 123456}, "r.password"),
    ({"spec": {"env": [{"name": "POSTGRE_PASSWORD", "value": "hunter2"}]}},
     "r.spec.env[0].value"),
    ({"configurationValues": json.dumps({"auth": {"apiToken": "abc"}})},
     "r.configurationValues<json>.auth.apiToken"),
    ({"userData": "export AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP"}, "r.userData"),
    ({"values": {"tls": {"key": "-----BEGIN RSA PRIVATE KEY-----\nMII..."}}},
     "r.values.tls.key"),
    ({"values": {"global": {"extraEnvironmentVars": {"SECRET_KEY": "plain"}}}},
     "r.values.global.extraEnvironmentVars.SECRET_KEY"),
])
def test_the_scan_catches_planted_secrets(inputs: dict[str, Any], path: str) -> None:
    assert leaks(PlannedResource("t", "r", inputs).inputs, "r") == [path]


@pytest.mark.parametrize("inputs", [
    {"manageMasterUserPassword": True},
    {"masterUserSecretKmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k"},
    {"env": [{"name": "POSTGRE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db"}}}]},
    {"pgConfig": {"password": {"secretName": "labelstudio-db"}}},
    {"pgConfig": {"password": {"secretName": "label-studio-db", "secretKey": "password"}}},
    {"extraEnvironmentSecrets": {"SECRET_KEY": {"secretName": "s", "secretKey": "k"}}},
])
def test_the_scan_accepts_references(inputs: dict[str, Any]) -> None:
    assert leaks(inputs, "r") == []
