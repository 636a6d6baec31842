"""The offline compliance check: every shipped stack passes the whole pack with zero
mandatory violations; flipping one setting fails naming the rule; relaxations show up as
advisory; the CLI's exit codes and JSON."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from infra.offline import Plan, PlannedResource
from policies.offline import Violation, enforcement_of, evaluate
from policies.rules import by_name

ROOT = Path(__file__).resolve().parent.parent


def mandatory(violations: list[Violation]) -> list[tuple[str, str]]:
    return sorted((v.rule, v.resource) for v in violations if v.mandatory)


def advisory_rules(violations: list[Violation]) -> set[str]:
    return {v.rule for v in violations if not v.mandatory}


def test_shipped_stack_has_no_mandatory_violation(each_stack: Plan) -> None:
    found = evaluate(each_stack)
    assert mandatory(found) == [], "\n".join(f"{v.rule} {v.resource}: {v.message}"
                                             for v in found if v.mandatory)


def test_shipped_stack_is_big_enough_to_mean_something(stack_plan: Callable[[str], Plan]
                                                       ) -> None:
    """Guards against a vacuous pass: the rules must have resources to look at."""
    plan = stack_plan("prod")
    types = {r.type for r in plan.resources}
    checked = {t for r in by_name().values() for t in r.types}
    assert {"aws:s3/bucket:Bucket", "aws:rds/instance:Instance", "aws:eks/cluster:Cluster",
            "aws:kms/key:Key", "aws:iam/rolePolicy:RolePolicy",
            "aws:ec2/securityGroup:SecurityGroup"} <= types
    assert len(types & checked) >= 15


# ---- one flipped setting fails naming the rule ---------------------------------------------
def _mutated(plan: Plan, pick: Callable[[PlannedResource], bool],
             change: Callable[[dict], None]) -> tuple[Plan, str]:
    plan = copy.deepcopy(plan)
    target = next(r for r in plan.resources if pick(r))
    change(target.inputs)
    return plan, target.name


def _widen_iam(inputs: dict) -> None:
    doc = json.loads(inputs["policy"])
    doc["Statement"][0]["Action"] = "s3:*"
    inputs["policy"] = json.dumps(doc)


FLIPS = {
    "public bucket": (lambda r: r.type.endswith("BucketPublicAccessBlock")
                      and r.name.startswith("source-"),
                      lambda i: i.update(blockPublicPolicy=False),
                      "s3-bucket-public-access-block"),
    "unencrypted RDS": (lambda r: r.type == "aws:rds/instance:Instance",
                        lambda i: i.update(storageEncrypted=False), "rds-storage-encrypted"),
    "public EKS endpoint": (lambda r: r.type == "aws:eks/cluster:Cluster",
                            lambda i: i["vpcConfig"].update(endpointPublicAccess=True),
                            "eks-endpoint-not-open"),
    "wildcard IAM action": (lambda r: r.type == "aws:iam/rolePolicy:RolePolicy", _widen_iam,
                            "iam-no-wildcard-action"),
    "database SG open to the internet": (
        lambda r: r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        lambda i: i.update(cidrIpv4="0.0.0.0/0", referencedSecurityGroupId=None),
        "sg-no-internet-ingress"),
    "KMS rotation off": (lambda r: r.type == "aws:kms/key:Key",
                         lambda i: i.update(enableKeyRotation=False), "kms-key-rotation"),
    "log group unencrypted": (lambda r: r.type == "aws:cloudwatch/logGroup:LogGroup",
                              lambda i: i.pop("kmsKeyId"), "logs-kms"),
    "bucket versioning suspended": (
        lambda r: r.type == "aws:s3/bucketVersioning:BucketVersioning",
        lambda i: i.update(versioningConfiguration={"status": "Suspended"}),
        "s3-bucket-versioning"),
}


@pytest.mark.parametrize("flip", sorted(FLIPS))
def test_flipping_one_setting_fails_naming_the_rule(flip: str,
                                                    stack_plan: Callable[[str], Plan]) -> None:
    pick, change, rule = FLIPS[flip]
    plan, name = _mutated(stack_plan("prod"), pick, change)
    found = mandatory(evaluate(plan))
    assert found, flip
    assert {r for r, _ in found} == {rule}
    # stack rules report the bucket, resource rules the resource itself
    assert any(res == name or name.startswith(res) for _, res in found), found


def test_flip_is_not_hidden_by_other_buckets(stack_plan: Callable[[str], Plan]) -> None:
    """Dropping one bucket's encryption names that bucket only (the join is per bucket)."""
    plan = copy.deepcopy(stack_plan("prod"))
    plan.resources = [r for r in plan.resources
                      if r.name != "annotations-encryption"
                      and not (r.type.endswith("ServerSideEncryptionConfiguration")
                               and "annotations" in r.property_deps.get("bucket", set()))]
    assert mandatory(evaluate(plan)) == [("s3-bucket-sse-kms", "annotations")]


# ---- relaxations are flagged, not blocking -------------------------------------------------
RELAXATIONS = {
    "egress nat": ({"egressMode": "nat"}, "vpc-nat-egress-relaxation"),
    "public ingress": ({"ingressMode": "public"}, "vpc-internet-gateway-relaxation"),
    "presigned images": ({"imageAccess": "presign", "annotatorCidrs": ["203.0.113.0/24"],
                          "labelStudioOrigin": "https://labels.example.org"},
                         "s3-cors-presign-relaxation"),
    "public EKS API (dev)": ({"clusterPublicAccessCidrs": ["203.0.113.0/24"]},
                             "eks-endpoint-public-relaxation"),
}


@pytest.mark.parametrize("relaxation", sorted(RELAXATIONS))
def test_relaxation_is_flagged_as_advisory(relaxation: str,
                                           plan_with: Callable[..., Plan]) -> None:
    overrides, rule = RELAXATIONS[relaxation]
    found = evaluate(plan_with("dev", **overrides))
    assert mandatory(found) == []
    assert rule in advisory_rules(found)


def test_policy_config_can_make_a_relaxation_blocking(plan_with: Callable[..., Plan]) -> None:
    plan = plan_with("dev", egressMode="nat")
    found = evaluate(plan, {"vpc-nat-egress-relaxation": "mandatory"})
    assert [r for r, _ in mandatory(found)] == ["vpc-nat-egress-relaxation"]
    assert evaluate(plan, {"all": "disabled"}) == []


def test_bad_enforcement_level_names_rule_and_value() -> None:
    rule = by_name()["rds-not-public"]
    with pytest.raises(ValueError, match="'rds-not-public': enforcement level 'strict'"):
        enforcement_of(rule, {"rds-not-public": {"enforcementLevel": "strict"}})


# ---- CLI -----------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.plan", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_prod_passes_and_prints_the_plan() -> None:
    out = _cli("--stack", "prod")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    # posture first, then one group per component, the rule count last
    assert "stack prod: effective posture" in lines[0]
    assert any("data protection" in line and "protected + retained" in line for line in lines)
    assert any(line.startswith("database (") for line in lines)
    assert any(line.startswith("storage (") for line in lines)
    assert "aws rds Instance" in out.stdout
    assert "encrypted=True" in out.stdout and "multi-az=True" in out.stdout
    assert "rules evaluated" in out.stdout and "0 mandatory" in out.stdout
    assert lines[-1].startswith("PASS:")
    assert max(len(line) for line in lines) <= 100  # reads well at 100 columns


def test_cli_json_for_ci() -> None:
    out = _cli("--stack", "dev", "--set", "egressMode=nat", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] is True and doc["summary"]["mandatory"] == 0
    assert "aws:ec2/natGateway:NatGateway" in {r["type"] for r in doc["resources"]}
    assert "vpc-nat-egress-relaxation" in {v["rule"] for v in doc["violations"]}


def test_cli_exits_1_on_mandatory_violation(tmp_path: Path) -> None:
    cfg = tmp_path / "policy-config.json"
    cfg.write_text(json.dumps({"vpc-nat-egress-relaxation": {"enforcementLevel": "mandatory"}}))
    out = _cli("--stack", "dev", "--set", "egressMode=nat", "--policy-config", str(cfg),
               "--json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] is False
    assert [v["rule"] for v in doc["violations"] if v["enforcement"] == "mandatory"] == [
        "vpc-nat-egress-relaxation"]


def test_cli_bad_config_exits_2_naming_the_key() -> None:
    out = _cli("--stack", "prod", "--set", 'clusterPublicAccessCidrs=["203.0.113.0/24"]')
    assert out.returncode == 2
    assert "labelstack:clusterPublicAccessCidrs" in out.stderr
    assert "prod keeps the EKS API private" in out.stderr
    out = _cli("--stack", "dev", "--set", "egressMode")
    assert out.returncode == 2 and "expected key=value" in out.stderr
    out = _cli("--stack", "nope")
    assert out.returncode == 2 and "no stack file Pulumi.nope.yaml" in out.stderr


def test_cli_bad_policy_config_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "policy-config.json"
    cfg.write_text(json.dumps({"rds-not-pubilc": "advisory"}))
    out = _cli("--stack", "dev", "--policy-config", str(cfg))
    assert out.returncode == 2
    assert "unknown rule(s) rds-not-pubilc" in out.stderr
    cfg.write_text(json.dumps({"rds-not-public": "sometimes"}))
    out = _cli("--stack", "dev", "--policy-config", str(cfg))
    assert out.returncode == 2
    assert "'rds-not-public': enforcement level 'sometimes' is not one of" in out.stderr


def test_first_up_without_the_kubernetes_layer(plan_with) -> None:
    """kubernetesLayer=false: AWS layers only (the first `up` of a new stack from outside the
    VPC), none of the site keys the layer needs, and a nextStep output that says what follows."""
    plan = plan_with("dev", kubernetesLayer=False, labelStudioOrigin="", certificateArn="",
                     labelStudioImageTag="")
    types = {r.type for r in plan.resources}
    assert not any(t.startswith("kubernetes:") for t in types)
    assert "aws:eks/cluster:Cluster" in types and "aws:rds/instance:Instance" in types
    assert "kubernetesLayer true" in plan.outputs["nextStep"]
    full = plan_with("dev")
    assert any(r.type.startswith("kubernetes:") for r in full.resources)
