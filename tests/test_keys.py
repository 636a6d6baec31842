"""KMS keys: one per purpose, rotation on, explicit policies with no wildcard principal."""

from __future__ import annotations

import json

import pytest

from infra.offline import ACCOUNT, Plan
from tests.plans import STACKS

KEY = "aws:kms/key:Key"
PURPOSES = ("data", "logs", "cluster")


def _policy(plan: Plan, purpose: str) -> dict:
    return json.loads(plan.named(f"keys-{purpose}").inputs["policy"])


def _principals(stmt: dict) -> list[str]:
    p = stmt["Principal"]
    if p == "*":
        return ["*"]
    return [v for vals in p.values() for v in ([vals] if isinstance(vals, str) else vals)]


def test_one_key_per_purpose_with_rotation(each_stack: Plan) -> None:
    keys = {r.name: r for r in each_stack.of_type(KEY)}
    assert set(keys) == {f"keys-{p}" for p in PURPOSES}
    for key in keys.values():
        assert key.inputs["enableKeyRotation"] is True
        assert key.inputs["deletionWindowInDays"] == 30
        assert key.inputs["customerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
        assert key.inputs.get("bypassPolicyLockoutSafetyCheck") in (None, False)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_key_policy_has_no_wildcard_principal(stack_plan, purpose: str) -> None:
    for stack in STACKS:
        policy = _policy(stack_plan(stack), purpose)
        for stmt in policy["Statement"]:
            assert stmt["Effect"] == "Allow"
            assert "*" not in _principals(stmt), stmt
            actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
            if "kms:*" in actions:
                # the only full-access statement is the account principal itself
                assert stmt["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}


def test_service_principals_are_scoped_to_this_account(stack_plan) -> None:
    policy = _policy(stack_plan("prod"), "logs")
    services = [s for s in policy["Statement"] if "Service" in s["Principal"]]
    assert {s["Principal"]["Service"] for s in services} == {
        "logs.us-east-1.amazonaws.com", "cloudtrail.amazonaws.com"}
    for stmt in services:
        scope = stmt["Condition"]["StringEquals"]
        # this account as the caller, or (SNS, which puts no aws:Source* key in the request)
        # a topic of this account as the encryption context
        assert scope.get("aws:SourceAccount") == ACCOUNT or scope[
            "kms:EncryptionContext:aws:sns:topicArn"].startswith(
                f"arn:aws:sns:us-east-1:{ACCOUNT}:labelstack-prod-")
    logs = next(s for s in services if s["Sid"] == "CloudWatchLogsForThisAccount")
    assert logs["Condition"]["StringLike"]["kms:EncryptionContext:aws:logs:arn"] == (
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:*")


def test_data_and_cluster_keys_trust_no_service(stack_plan) -> None:
    plan = stack_plan("dev")
    for purpose in ("data", "cluster"):
        assert all("Service" not in s["Principal"] for s in _policy(plan, purpose)["Statement"])


@pytest.mark.parametrize("stack", STACKS)
def test_keys_protected_only_in_prod(stack_plan, stack: str) -> None:
    plan = stack_plan(stack)
    for key in plan.of_type(KEY):
        assert key.protect is (stack == "prod")
        assert key.retain_on_delete is (stack == "prod")


def test_keys_exported(stack_plan) -> None:
    out = stack_plan("dev").outputs
    for purpose in PURPOSES:
        assert out[f"{purpose}KeyArn"].startswith(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/")
