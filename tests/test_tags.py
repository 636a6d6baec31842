"""One tagging mechanism: every taggable resource carries the standard tags; data buckets
are classified phi."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pytest

from infra.offline import Plan
from infra.tagging import _takes_tags
from tests.plans import STACKS

STANDARD = ("Project", "Environment", "Stack", "Owner", "CostCenter", "DataClassification",
            "ManagedBy")


def _class_of(type_token: str) -> type | None:
    """The pulumi_aws class registered for a type token."""
    module = type_token.split(":")[1].split("/")[0]
    name = type_token.rsplit(":", 1)[1]
    return getattr(getattr(aws, module, None), name, None)


def test_every_taggable_resource_has_standard_tags(each_stack: Plan) -> None:
    taggable = 0
    for res in each_stack.resources:
        if not res.custom or not res.type.startswith("aws:"):
            continue
        cls = _class_of(res.type)
        assert cls is not None and issubclass(cls, pulumi.CustomResource), res.type
        if not _takes_tags(cls):
            assert "tags" not in res.inputs, res.name
            continue
        taggable += 1
        tags = res.inputs.get("tags") or {}
        missing = [k for k in STANDARD if not tags.get(k)]
        assert missing == [], (res.type, res.name, missing)
        assert tags["Environment"] == each_stack.config["labelstack:profile"]
        assert tags["Stack"] == each_stack.stack
    assert taggable > 20


@pytest.mark.parametrize("stack", STACKS)
def test_data_classification(stack_plan, stack: str) -> None:
    plan = stack_plan(stack)
    cls = {b.name: b.inputs["tags"]["DataClassification"]
           for b in plan.of_type("aws:s3/bucket:Bucket")}
    assert cls == {"source-segmentation": "phi", "source-dermatology": "phi",
                   "annotations": "phi", "models": "phi", "audit": "internal",
                   "access-logs": "internal"}


def test_owner_and_cost_center_come_from_config(plan_with) -> None:
    plan = plan_with("dev", owner="imaging-team", costCenter="cc-4711")
    vpc = plan.named("network-vpc")
    assert vpc.inputs["tags"]["Owner"] == "imaging-team"
    assert vpc.inputs["tags"]["CostCenter"] == "cc-4711"
    assert vpc.inputs["tags"]["Name"] == "network-dev"  # resource-specific tag kept
