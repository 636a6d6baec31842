"""Helpers for the compute-plane tests: look resources up in a :class:`Plan` by what the
program wired into them (mock ids are ``<logical name>-id``, role ARNs end in the role name).
"""

from __future__ import annotations

import json
from typing import Any

from infra.offline import Plan, PlannedResource

CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ADDON = "aws:eks/addon:Addon"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
INLINE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
RDS = "aws:rds/instance:Instance"
ECR = "aws:ecr/repository:Repository"
SG = "aws:ec2/securityGroup:SecurityGroup"


def one(plan: Plan, type_token: str) -> PlannedResource:
    """The single resource of a type (fails when there are none or several)."""
    found = plan.of_type(type_token)
    assert len(found) == 1, f"{len(found)} resources of type {type_token}"
    return found[0]


def by_id(plan: Plan, resource_id: str) -> PlannedResource:
    """The resource whose mock id (``<name>-id``) this is."""
    return plan.named(resource_id.removesuffix("-id"))


def role_by_arn(plan: Plan, arn: str) -> PlannedResource:
    """The IAM role a (mock) role ARN points at."""
    role_name = arn.rsplit("/", 1)[1]
    found = [r for r in plan.of_type(ROLE)
             if (r.inputs.get("name") or f"{r.name}-0123abcd") == role_name]
    assert len(found) == 1, f"no role for {arn}"
    return found[0]


def trust(role: PlannedResource) -> dict[str, Any]:
    """The parsed trust policy of a role."""
    return json.loads(role.inputs["assumeRolePolicy"])


def attached_policies(plan: Plan, role: PlannedResource) -> set[str]:
    """Names of the managed policies attached to a role."""
    role_name = role.inputs.get("name") or f"{role.name}-0123abcd"
    return {a.inputs["policyArn"].rsplit("/", 1)[1] for a in plan.of_type(ATTACHMENT)
            if a.inputs["role"] == role_name}


def inline_policies(plan: Plan, role: PlannedResource) -> list[dict[str, Any]]:
    """Parsed inline policies of a role."""
    return [json.loads(p.inputs["policy"]) for p in plan.of_type(INLINE_POLICY)
            if p.inputs["role"] == f"{role.name}-id"]


def addons(plan: Plan) -> dict[str, PlannedResource]:
    """EKS add-ons by add-on name."""
    return {a.inputs["addonName"]: a for a in plan.of_type(ADDON)}


def node_groups(plan: Plan) -> dict[str, PlannedResource]:
    """Node groups by pool (the ``labelstack.io/node-pool`` label)."""
    return {g.inputs["labels"]["labelstack.io/node-pool"]: g for g in plan.of_type(NODE_GROUP)}
