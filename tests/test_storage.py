"""Buckets: one per purpose, each hardened; prod protected, ephemeral destroyable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.offline import Plan, PlannedResource
from infra.storage import DATA_ACTIONS
from tests.plans import STACKS

BUCKET = "aws:s3/bucket:Bucket"
PRESIGN = {"imageAccess": "presign", "annotatorCidrs": ["203.0.113.0/24", "198.51.100.7/32"],
           "labelStudioOrigin": "https://labels.example.org"}
KMS_BUCKETS = ("source-segmentation", "source-dermatology", "annotations", "models", "audit")
ALL_BUCKETS = (*KMS_BUCKETS, "access-logs")


def _config(plan: Plan, bucket: str, part: str) -> PlannedResource:
    res = plan.named(f"{bucket}-{part}")
    assert res.inputs["bucket"] == f"{bucket}-id"  # attached to this bucket
    assert res.parent == bucket
    return res


def _policy(plan: Plan, bucket: str) -> dict[str, dict[str, Any]]:
    doc = json.loads(_config(plan, bucket, "policy").inputs["policy"])
    return {s["Sid"]: s for s in doc["Statement"]}


def test_one_bucket_per_purpose(each_stack: Plan) -> None:
    assert sorted(b.name for b in each_stack.of_type(BUCKET)) == sorted(ALL_BUCKETS)
    assert sorted(each_stack.outputs["bucketNames"]) == sorted(ALL_BUCKETS)
    assert each_stack.outputs["bucketArns"]["annotations"] == "arn:aws:s3:::annotations-0123abcd"


def test_source_bucket_per_configured_project(plan_with) -> None:
    plan = plan_with("dev", sourceProjects=["wounds", "retina", "xray"])
    names = {b.name for b in plan.of_type(BUCKET)}
    assert {"source-wounds", "source-retina", "source-xray"} <= names
    assert not {"source-segmentation", "source-dermatology"} & names


@pytest.mark.parametrize("bucket", ALL_BUCKETS)
def test_every_bucket_hardened(each_stack: Plan, bucket: str) -> None:
    pab = _config(each_stack, bucket, "public-access-block").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                          "ignorePublicAcls", "restrictPublicBuckets"))
    own = _config(each_stack, bucket, "ownership").inputs
    assert own["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    ver = _config(each_stack, bucket, "versioning").inputs
    assert ver["versioningConfiguration"] == {"status": "Enabled"}
    rules = {r["id"]: r for r in _config(each_stack, bucket, "lifecycle").inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"][
        "noncurrentDays"] >= 7
    assert rules["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"] == {
        "daysAfterInitiation": 7}
    assert all(r["status"] == "Enabled" for r in rules.values())
    tls = _policy(each_stack, bucket)["DenyInsecureTransport"]
    assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", "s3:*")
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert tls["Resource"] == [f"arn:aws:s3:::{bucket}-0123abcd",
                               f"arn:aws:s3:::{bucket}-0123abcd/*"]


@pytest.mark.parametrize("bucket", KMS_BUCKETS)
def test_sse_kms_with_bucket_key_and_key_enforced(each_stack: Plan, bucket: str) -> None:
    key = "logs" if bucket == "audit" else "data"
    key_arn = each_stack.outputs[f"{key}KeyArn"]
    (rule,) = _config(each_stack, bucket, "encryption").inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms",
                                                          "kmsMasterKeyId": key_arn}
    assert rule["bucketKeyEnabled"] is True
    stmts = _policy(each_stack, bucket)
    other_key = stmts["DenyOtherKmsKey"]
    assert (other_key["Effect"], other_key["Action"]) == ("Deny", "s3:PutObject")
    assert other_key["Condition"] == {"StringNotEqualsIfExists": {
        "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}}
    assert stmts["DenyOtherEncryption"]["Condition"] == {"StringNotEqualsIfExists": {
        "s3:x-amz-server-side-encryption": "aws:kms"}}
    log = _config(each_stack, bucket, "logging").inputs
    assert log["targetBucket"] == "access-logs-id"
    assert log["targetPrefix"] == f"{bucket}/"


def test_access_logs_exceptions(each_stack: Plan) -> None:
    """SSE-S3 (log delivery cannot use SSE-KMS), no self-logging, delivery by the service."""
    (rule,) = _config(each_stack, "access-logs", "encryption").inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    with pytest.raises(KeyError):
        each_stack.named("access-logs-logging")
    delivery = _policy(each_stack, "access-logs")["S3ServerAccessLogsDelivery"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert sorted(delivery["Condition"]["ArnLike"]["aws:SourceArn"]) == sorted(
        f"arn:aws:s3:::{b}-0123abcd" for b in KMS_BUCKETS)


@pytest.mark.parametrize("stack", STACKS)
def test_sources_and_annotations_only_through_vpc_endpoint(stack_plan, stack: str) -> None:
    plan = stack_plan(stack)
    for bucket in ("source-segmentation", "source-dermatology", "annotations"):
        stmt = _policy(plan, bucket)["DenyDataAccessOutsideVpcEndpoint"]
        assert (stmt["Effect"], stmt["Principal"]) == ("Deny", "*")
        assert set(stmt["Action"]) == set(DATA_ACTIONS)
        assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= set(stmt["Action"])
        cond = dict(stmt["Condition"])
        assert cond.pop("StringNotEquals") == {"aws:SourceVpce": "network-s3-id"}
        if stack == "prod":  # prod names a break-glass role
            assert cond.pop("ArnNotEquals") == {
                "aws:PrincipalArn": "arn:aws:iam::123456789012:role/break-glass"}
        assert cond == {}  # proxy mode: no IP exception
    for bucket in ("models", "audit"):
        assert "DenyDataAccessOutsideVpcEndpoint" not in _policy(plan, bucket)


def test_presign_mode_adds_annotator_ips_and_cors(plan_with) -> None:
    plan = plan_with("dev", **PRESIGN)
    stmt = _policy(plan, "source-segmentation")["DenyDataAccessOutsideVpcEndpoint"]
    assert stmt["Condition"]["NotIpAddress"] == {"aws:SourceIp": PRESIGN["annotatorCidrs"]}
    (rule,) = _config(plan, "source-segmentation", "cors").inputs["corsRules"]
    assert rule["allowedOrigins"] == ["https://labels.example.org"]
    assert rule["allowedMethods"] == ["GET", "HEAD"]
    for bucket in ("annotations", "models", "audit", "access-logs"):
        with pytest.raises(KeyError):
            plan.named(f"{bucket}-cors")


def test_no_cors_in_proxy_mode(each_stack: Plan) -> None:
    assert each_stack.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration") == []


@pytest.mark.parametrize("stack", STACKS)
def test_destroy_posture(stack_plan, stack: str) -> None:
    plan = stack_plan(stack)
    for bucket in plan.of_type(BUCKET):
        assert bucket.protect is (stack == "prod"), bucket.name
        assert bucket.retain_on_delete is (stack == "prod"), bucket.name
        assert bucket.inputs["forceDestroy"] is (stack == "ephemeral"), bucket.name
    settings = [r for r in plan.resources if r.type.startswith("aws:s3/bucket")
                and r.type != BUCKET]
    assert len(settings) >= 6 * 6
    for res in settings:  # a retained bucket keeps its hardening
        assert res.protect is (stack == "prod"), res.name
        assert res.retain_on_delete is (stack == "prod"), res.name


def test_noncurrent_retention_grows_with_profile(stack_plan) -> None:
    days = {s: _config(stack_plan(s), "annotations", "lifecycle").inputs["rules"][0][
        "noncurrentVersionExpiration"]["noncurrentDays"] for s in STACKS}
    assert days["ephemeral"] < days["dev"] < days["staging"] < days["prod"] == 365


def test_bucket_policies_wait_for_public_access_block(each_stack: Plan) -> None:
    for policy in each_stack.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        bucket = policy.name.removesuffix("-policy")
        assert f"{bucket}-public-access-block" in policy.depends_on, policy.name
