"""The ALB in front of Label Studio can write its access logs into the access-logs bucket.

* The bucket policy grants ``s3:PutObject`` (nothing else) to Elastic Load Balancing's log
  delivery: the regional ELB account in regions opened before August 2022, the service
  principal in newer ones, and only under ``<prefix>/AWSLogs/<account>/``, where ``<prefix>``
  is what the Ingress's ``load-balancer-attributes`` annotation tells the controller.
* An unknown region fails the plan with a message naming ``aws:region`` and the fix.
* The bucket stays SSE-S3 (the only encryption ALB access logs support) and keeps its other
  statements.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from infra.config import ConfigError
from infra.k8s.ingress import ACCESS_LOG_PREFIX
from infra.offline import ACCOUNT, Plan
from infra.storage import (
    ELB_LOG_ACCOUNTS,
    ELB_LOG_DELIVERY_SERVICE,
    ELB_LOG_SERVICE_REGIONS,
    alb_log_delivery,
    elb_log_principal,
)

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
ELB_SID = "AlbAccessLogsDelivery"


def _policy(plan: Plan) -> list[dict[str, Any]]:
    return json.loads(plan.named("access-logs-policy").inputs["policy"])["Statement"]


def _lb_attributes(plan: Plan) -> dict[str, str]:
    (ingress,) = plan.of_type(INGRESS)
    raw = ingress.inputs["metadata"]["annotations"][
        "alb.ingress.kubernetes.io/load-balancer-attributes"]
    return dict(pair.split("=", 1) for pair in raw.split(","))


def _bucket(plan: Plan) -> str:
    return plan.outputs["bucketNames"]["access-logs"]


def _elb_statements(plan: Plan) -> list[dict[str, Any]]:
    """Every statement naming an ELB log-delivery principal."""
    elb = {f"arn:aws:iam::{a}:root" for a in ELB_LOG_ACCOUNTS.values()}
    found = []
    for s in _policy(plan):
        principal = s.get("Principal", {})
        if not isinstance(principal, dict):
            continue
        if principal.get("AWS") in elb or principal.get("Service") == ELB_LOG_DELIVERY_SERVICE:
            found.append(s)
    return found


def _assert_put_only_under_ingress_prefix(plan: Plan, principal: dict[str, str]) -> None:
    attrs = _lb_attributes(plan)
    assert attrs["access_logs.s3.enabled"] == "true"
    # the Ingress writes into this stack's access-logs bucket, under the shared prefix
    assert attrs["access_logs.s3.bucket"] == _bucket(plan)
    assert attrs["access_logs.s3.prefix"] == ACCESS_LOG_PREFIX
    prefix = attrs["access_logs.s3.prefix"]
    (stmt,) = _elb_statements(plan)
    assert stmt == {
        "Sid": ELB_SID, "Effect": "Allow", "Principal": principal, "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{_bucket(plan)}/{prefix}/AWSLogs/{ACCOUNT}/*"}


def test_regional_elb_account_before_august_2022(stack_plan) -> None:
    plan = stack_plan("prod")
    assert plan.config["aws:region"] == "us-east-1"
    _assert_put_only_under_ingress_prefix(
        plan, {"AWS": "arn:aws:iam::127311923021:root"})


def test_service_principal_in_a_newer_region(plan_with) -> None:
    plan = plan_with("dev", **{"aws:region": "eu-south-2"})
    _assert_put_only_under_ingress_prefix(plan, {"Service": ELB_LOG_DELIVERY_SERVICE})


def test_unknown_region_fails_the_plan_naming_the_key(plan_with) -> None:
    with pytest.raises(ValueError, match=r"aws:region: got 'xx-north-9'.*ELB_LOG_ACCOUNTS"):
        plan_with("dev", **{"aws:region": "xx-north-9"})


def test_other_statements_are_kept(stack_plan) -> None:
    stmts = {s["Sid"]: s for s in _policy(stack_plan("prod"))}
    assert set(stmts) == {"DenyInsecureTransport", "S3ServerAccessLogsDelivery", ELB_SID}
    assert stmts["DenyInsecureTransport"]["Effect"] == "Deny"
    assert stmts["S3ServerAccessLogsDelivery"]["Principal"] == {
        "Service": "logging.s3.amazonaws.com"}


def test_access_logs_bucket_is_sse_s3(stack_plan) -> None:
    """ALB access logs can only be written to an SSE-S3 bucket (no SSE-KMS)."""
    (rule,) = stack_plan("prod").named("access-logs-encryption").inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}


@pytest.mark.parametrize("region,expected", [
    ("us-east-1", {"AWS": "arn:aws:iam::127311923021:root"}),
    ("eu-west-1", {"AWS": "arn:aws:iam::156460612806:root"}),
    ("us-gov-west-1", {"AWS": "arn:aws-us-gov:iam::048591011584:root"}),
    ("eu-central-2", {"Service": ELB_LOG_DELIVERY_SERVICE}),
    ("il-central-1", {"Service": ELB_LOG_DELIVERY_SERVICE}),
])
def test_principal_per_region(region: str, expected: dict[str, str]) -> None:
    partition = "aws-us-gov" if region.startswith("us-gov-") else "aws"
    assert elb_log_principal(region, partition) == expected


def test_unknown_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^aws:region: got 'xx-north-9'"):
        elb_log_principal("xx-north-9")


def test_region_table_is_well_formed() -> None:
    assert not set(ELB_LOG_ACCOUNTS) & ELB_LOG_SERVICE_REGIONS
    assert all(re.fullmatch(r"\d{12}", a) for a in ELB_LOG_ACCOUNTS.values())
    assert len(set(ELB_LOG_ACCOUNTS.values())) == len(ELB_LOG_ACCOUNTS)


@pytest.mark.parametrize("prefix", ["", "/alb", "alb/", "alb/AWSLogs"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        alb_log_delivery(None, "arn:aws:s3:::b", prefix)  # type: ignore[arg-type]
