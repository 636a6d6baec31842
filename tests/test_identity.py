"""Workload identity and every IAM document in the plan.

* Trust pins both ``<issuer>:sub`` and ``<issuer>:aud``.
* Label Studio: read-only on sources (within prefixes), put-only under the annotations
  prefix, KMS only through S3; SAM2: the model bucket only. No ``*`` action or resource.
* Every IAM document (role trust, role policies, bucket policies, key policies) parses as
  JSON and passes ``parliament``. Parliament lints identity policies; on trust, bucket and
  key policies a few of its checks do not apply (it says so itself: duo-labs/parliament
  issues 14 and 229). Exactly those findings are waived below, each matched narrowly and
  explained; any other finding fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from parliament import analyze_policy_string

from infra.offline import ACCOUNT, Plan
from tests.plans import STACKS

ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
WRITE_OR_DELETE = re.compile(r"^s3:(Put|Delete|Restore|Replicate|Create|Abort|Bypass|Update)")
PRESIGN = {"imageAccess": "presign", "annotatorCidrs": ["203.0.113.0/24"],
           "labelStudioOrigin": "https://labels.example.org"}

#: (document kind, parliament issue, detail pattern, why it does not apply)
WAIVERS: list[tuple[str, str, str, str]] = [
    ("trust", "MALFORMED", "^Statement contains neither Resource nor NotResource$",
     "trust policies have no Resource element by definition"),
    ("trust", "UNKNOWN_FEDERATION_SOURCE", rf"^arn:aws:iam::{ACCOUNT}:oidc-provider/",
     "parliament knows SAML and a few web IdPs, not IAM OIDC providers (IRSA)"),
    ("key", "RESOURCE_STAR", ".*",
     "in a key policy Resource '*' means this key; a key policy cannot name its own ARN"),
    ("bucket", "MISMATCHED_TYPE_BUT_USABLE",
     "^Type mismatch: StringNotEqualsIfExists requires a value of type String but given Arn$",
     "s3:x-amz-server-side-encryption-aws-kms-key-id is a String key whose value is the key "
     "ARN (the form AWS documents)"),
]


def _iam_documents(plan: Plan) -> Iterator[tuple[str, str, str]]:
    """(kind, resource name, JSON) for every IAM document in the plan."""
    fields = {"aws:iam/role:Role": ("assumeRolePolicy", "trust"),
              "aws:iam/rolePolicy:RolePolicy": ("policy", "identity"),
              "aws:iam/policy:Policy": ("policy", "identity"),
              "aws:s3/bucketPolicy:BucketPolicy": ("policy", "bucket"),
              "aws:kms/key:Key": ("policy", "key"),
              "aws:ec2/vpcEndpoint:VpcEndpoint": ("policy", "endpoint")}
    for r in plan.resources:
        if r.type in fields:
            key, kind = fields[r.type]
            if r.inputs.get(key):
                yield kind, r.name, r.inputs[key]


def _stmts(plan: Plan, name: str, key: str = "policy") -> list[dict[str, Any]]:
    return json.loads(plan.named(name).inputs[key])["Statement"]


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _unwaived(kind: str, finding: Any) -> bool:
    detail = finding.detail if isinstance(finding.detail, str) else json.dumps(finding.detail)
    for w_kind, issue, pattern, _why in WAIVERS:
        if w_kind == kind and finding.issue == issue and re.search(pattern, detail):
            return False
    return True


# ---- parliament over every document -----------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, PRESIGN], ids=["shipped", "presign"])
@pytest.mark.parametrize("stack", STACKS)
def test_every_iam_document_passes_parliament(stack_plan, plan_with, stack: str,
                                              overrides: dict) -> None:
    plan = plan_with(stack, **overrides) if overrides else stack_plan(stack)
    docs = list(_iam_documents(plan))
    kinds = {k for k, _, _ in docs}
    assert kinds == {"trust", "identity", "bucket", "key", "endpoint"}
    problems = []
    for kind, name, text in docs:
        json.loads(text)  # parses
        result = analyze_policy_string(text)
        problems += [(name, f.issue, f.detail) for f in result.findings if _unwaived(kind, f)]
    assert problems == []


def test_waivers_are_narrow() -> None:
    """A waived issue on the wrong kind of document still fails."""
    identity_with_star = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]})
    findings = analyze_policy_string(identity_with_star).findings
    assert any(f.issue == "RESOURCE_STAR" for f in findings)
    assert any(_unwaived("identity", f) for f in findings)


# ---- trust ------------------------------------------------------------------------------------
@pytest.mark.parametrize("role,sa", [("identity-label-studio", "label-studio"),
                                     ("identity-sam2", "sam2-backend")])
def test_trust_pins_service_account_and_audience(each_stack: Plan, role: str, sa: str) -> None:
    (stmt,) = _stmts(each_stack, role, "assumeRolePolicy")
    assert stmt["Effect"] == "Allow"
    assert stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert stmt["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"}
    assert stmt["Condition"] == {"StringEquals": {
        f"{ISSUER}:sub": f"system:serviceaccount:labelstack:{sa}",
        f"{ISSUER}:aud": "sts.amazonaws.com"}}


def test_trust_follows_namespace(plan_with) -> None:
    plan = plan_with("dev", namespace="labeling-prod")
    (stmt,) = _stmts(plan, "identity-label-studio", "assumeRolePolicy")
    assert stmt["Condition"]["StringEquals"][f"{ISSUER}:sub"] == (
        "system:serviceaccount:labeling-prod:label-studio")


# ---- Label Studio ------------------------------------------------------------------------------
def test_label_studio_reads_sources_within_prefixes_only(each_stack: Plan) -> None:
    names = each_stack.outputs["bucketNames"]
    stmts = {s["Sid"]: s for s in _stmts(each_stack, "identity-label-studio-policy")}
    sources = sorted(f"arn:aws:s3:::{v}" for k, v in names.items() if k.startswith("source-"))
    lst = stmts["ListSourcePrefixes"]
    assert (lst["Action"], sorted(lst["Resource"])) == ("s3:ListBucket", sources)
    assert lst["Condition"] == {"StringLike": {"s3:prefix": ["images/*", "tasks/*"]}}
    read = stmts["ReadSourceObjects"]
    assert read["Action"] == "s3:GetObject"
    assert sorted(read["Resource"]) == sorted(f"{b}/{p}*" for b in sources
                                              for p in ("images/", "tasks/"))


def test_label_studio_is_read_only_on_sources(each_stack: Plan) -> None:
    names = each_stack.outputs["bucketNames"]
    sources = [f"arn:aws:s3:::{v}" for k, v in names.items() if k.startswith("source-")]
    for stmt in _stmts(each_stack, "identity-label-studio-policy"):
        assert stmt["Effect"] == "Allow"
        actions = _as_list(stmt["Action"])
        resources = _as_list(stmt["Resource"])
        touches_source = any(r.startswith(s) for r in resources for s in sources)
        if touches_source:
            assert set(actions) <= {"s3:GetObject", "s3:ListBucket"}, stmt
        for action in actions:
            assert "*" not in action and not action.startswith("s3:Delete"), stmt
        assert "*" not in resources, stmt


def test_label_studio_writes_only_under_annotations_prefix(plan_with) -> None:
    plan = plan_with("dev", annotationsPrefix="labels/out/")
    ann = f"arn:aws:s3:::{plan.outputs['bucketNames']['annotations']}"
    writes = [s for s in _stmts(plan, "identity-label-studio-policy")
              if any(WRITE_OR_DELETE.match(a) for a in _as_list(s["Action"]))]
    assert len(writes) == 1
    assert writes[0]["Action"] == "s3:PutObject"
    assert writes[0]["Resource"] == f"{ann}/labels/out/*"


def test_kms_only_through_s3_on_data_key(each_stack: Plan) -> None:
    for policy in ("identity-label-studio-policy", "identity-sam2-policy"):
        kms = [s for s in _stmts(each_stack, policy)
               if any(a.startswith("kms:") for a in _as_list(s["Action"]))]
        assert len(kms) == 1
        assert kms[0]["Resource"] == each_stack.outputs["dataKeyArn"]
        assert kms[0]["Condition"] == {"StringEquals": {
            "kms:ViaService": "s3.us-east-1.amazonaws.com"}}
        assert "kms:Decrypt" in kms[0]["Action"]
        assert not {"kms:CreateGrant", "kms:ReEncryptFrom", "kms:Encrypt"} & set(
            kms[0]["Action"])


def test_sam2_reads_model_bucket_only(each_stack: Plan) -> None:
    models = f"arn:aws:s3:::{each_stack.outputs['bucketNames']['models']}"
    for stmt in _stmts(each_stack, "identity-sam2-policy"):
        for action in _as_list(stmt["Action"]):
            assert action in {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}, action
        if stmt["Action"] != ["kms:Decrypt"]:
            assert all(r in (models, f"{models}/*") for r in _as_list(stmt["Resource"]))


def test_roles_exported(each_stack: Plan) -> None:
    out = each_stack.outputs
    assert out["labelStudioRoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/identity-label")
    assert out["sam2RoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/identity-sam2")
