"""Bad configuration fails before any resource is declared, naming the key, the value and
what is allowed; valid edge cases pass."""

from __future__ import annotations

from typing import Any

import pytest

from infra import offline
from infra.config import ConfigError

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    # (stack, overrides, key named in the message, fragment of the reason)
    ("dev", {"azCount": 4}, "azCount", "must be 2 or 3"),
    ("prod", {"azCount": 2}, "azCount", "at least 3"),
    ("dev", {"vpcCidr": "8.8.0.0/16"}, "vpcCidr", "private IPv4 range"),
    ("dev", {"vpcCidr": "10.0.0.0/8"}, "vpcCidr", "/16 to /20"),
    ("dev", {"vpcCidr": "10.0.0.1/16"}, "vpcCidr", "is not a CIDR block"),
    ("dev", {"egressMode": "internet"}, "egressMode", "'none' or 'nat'"),
    ("dev", {"ingressMode": "open"}, "ingressMode", "'internal' or 'public'"),
    ("dev", {"imageAccess": "presign"}, "annotatorCidrs", "needs the annotators' CIDRs"),
    ("dev", {"imageAccess": "presign", "annotatorCidrs": ["203.0.113.0/24"],
             "labelStudioOrigin": ""}, "labelStudioOrigin", "needs the Label Studio origin"),
    ("dev", {"annotatorCidrs": ["203.0.113.0/24"]}, "annotatorCidrs",
     "only used with imageAccess=presign"),
    ("dev", {"imageAccess": "presign", "annotatorCidrs": ["0.0.0.0/0"],
             "labelStudioOrigin": "https://labels.example.org"}, "annotatorCidrs",
     "whole internet"),
    ("dev", {"labelStudioOrigin": "http://labels.example.org/"}, "labelStudioOrigin",
     "https origin"),
    ("dev", {"sourceProjects": []}, "sourceProjects", "at least one"),
    ("dev", {"sourceProjects": ["Segmentation"]}, "sourceProjects", "lowercase"),
    ("dev", {"sourceProjects": ["a-b", "a-b"]}, "sourceProjects", "unique"),
    ("dev", {"sourcePrefixes": ["/images"]}, "sourcePrefixes", "S3 key prefix"),
    ("dev", {"annotationsPrefix": "exports"}, "annotationsPrefix", "ends with /"),
    ("dev", {"logRetentionDays": 45}, "logRetentionDays", "must be one of"),
    ("prod", {"logRetentionDays": 90}, "logRetentionDays", "at least 365"),
    ("dev", {"breakGlassRoleArn": "arn:aws:iam::123:user/bob"}, "breakGlassRoleArn",
     "IAM role ARN"),
    ("dev", {"namespace": "Label_Studio"}, "namespace", "RFC 1123"),
    ("dev", {"egresMode": "nat"}, "egresMode", "unknown key"),
    ("dev", {"profile": "production"}, "profile", "'ephemeral', 'dev', 'staging' or 'prod'"),
]


@pytest.mark.parametrize("stack,overrides,key,reason", INVALID,
                         ids=[f"{k}-{i}" for i, (_, _, k, _) in enumerate(INVALID)])
def test_invalid_config_names_the_key(plan_with, stack: str, overrides: dict[str, Any],
                                      key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        plan_with(stack, **overrides)
    message = str(exc.value)
    assert f"labelstack:{key}: got " in message
    assert reason in message
    # the bad value is quoted back
    if key in overrides and not isinstance(overrides[key], list):
        assert str(overrides[key]) in message


def test_enough_distinct_keys_covered() -> None:
    assert len({key for _, _, key, _ in INVALID}) >= 8


def test_several_problems_reported_at_once(plan_with) -> None:
    with pytest.raises(ConfigError) as exc:
        plan_with("dev", azCount=5, egressMode="internet", namespace="UPPER")
    lines = str(exc.value).splitlines()[1:]
    assert sorted(line.split(":")[1] for line in lines) == ["azCount", "egressMode",
                                                            "namespace"]


def test_bad_config_declares_no_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    declared: list[str] = []
    original = offline.RecordingMocks.new_resource

    def spy(self, args):
        declared.append(args.name)
        return original(self, args)

    monkeypatch.setattr(offline.RecordingMocks, "new_resource", spy)
    with pytest.raises(ConfigError):
        offline.run("dev", {"vpcCidr": "300.0.0.0/16"})
    assert declared == []
    offline.run("dev")  # the spy does see a good run
    assert "network-vpc" in declared


@pytest.mark.parametrize("overrides", [
    {"vpcCidr": "172.16.0.0/20"},  # smallest range
    {"vpcCidr": "192.168.0.0/16", "azCount": 3},
    {"egressMode": "nat", "ingressMode": "public"},
    {"imageAccess": "presign", "annotatorCidrs": ["203.0.113.7/32"],
     "labelStudioOrigin": "https://labels.example.org:8443"},
    {"sourceProjects": ["ab"], "sourcePrefixes": ["a/b/c/"], "annotationsPrefix": "x/"},
    {"breakGlassRoleArn": "arn:aws-us-gov:iam::123456789012:role/ir/break-glass"},
    {"logRetentionDays": 30},  # dev floor exactly
], ids=["small-vpc", "three-azs", "nat-public", "presign", "short-names", "gov-arn",
        "dev-floor"])
def test_valid_edge_cases(plan_with, overrides: dict[str, Any]) -> None:
    plan = plan_with("dev", **overrides)
    assert len(plan.of_type("aws:s3/bucket:Bucket")) >= 5
