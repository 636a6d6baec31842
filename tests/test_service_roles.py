"""Service-linked roles in a fresh account: the ones the stack relies on are declared when the
account lacks them (kept on destroy), the KMS grant and the services that use them wait for
them, and a lookup that finds them (or ``serviceLinkedRoles=existing``) declares none."""

from __future__ import annotations

import pytest

from infra import offline
from infra.config import ConfigError
from infra.service_roles import ROLES, role_path
from tests.compute_helpers import NODE_GROUP, RDS
from tests.test_graph import closure, edges

SLR = "aws:iam/serviceLinkedRole:ServiceLinkedRole"
GRANT = "aws:kms/grant:Grant"
ALL_ROLES = tuple(f"{role_path(s)}{n}" for s, n in ROLES.items())


def _services(plan: offline.Plan) -> set[str]:
    return {r.inputs["awsServiceName"] for r in plan.of_type(SLR)}


def test_fresh_account_gets_every_role_it_needs(stack_plan) -> None:
    plan = stack_plan("prod")
    assert _services(plan) == {"autoscaling.amazonaws.com", "eks-nodegroup.amazonaws.com",
                               "elasticloadbalancing.amazonaws.com", "rds.amazonaws.com"}
    assert "aws:iam/getRoles:getRoles" in plan.calls
    for role in plan.of_type(SLR):
        # the role belongs to the account: a destroy leaves it
        assert role.retain_on_delete is True
        assert not role.inputs.get("customSuffix")
    assert plan.outputs["serviceLinkedRolesCreated"] == [
        "autoscaling", "eks-nodegroup", "elasticloadbalancing", "rds"]


def test_grant_exists_only_after_the_autoscaling_role(stack_plan) -> None:
    plan = stack_plan("prod")
    graph = edges(plan)
    asg = plan.named("service-roles-autoscaling")
    (grant,) = plan.of_type(GRANT)
    assert asg.key in closure(graph, grant.key)
    assert grant.inputs["granteePrincipal"] == (
        f"arn:aws:iam::{offline.ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/"
        "AWSServiceRoleForAutoScaling")
    for group in plan.of_type(NODE_GROUP):
        waits = closure(graph, group.key)
        assert {asg.key, plan.named("service-roles-eks-nodegroup").key, grant.key} <= waits
    (db,) = plan.of_type(RDS)
    assert plan.named("service-roles-rds").key in closure(graph, db.key)


def test_roles_the_lookup_finds_are_not_created() -> None:
    found = ("/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
             "/aws-service-role/rds.amazonaws.com/AWSServiceRoleForRDS",
             "/some-other-path/AWSServiceRoleForAmazonEKSNodegroup")  # wrong path: not it
    plan = offline.run("dev", account_roles=found)
    assert _services(plan) == {"eks-nodegroup.amazonaws.com",
                               "elasticloadbalancing.amazonaws.com"}
    (grant,) = plan.of_type(GRANT)
    assert not any(d.startswith(SLR) for d in closure(edges(plan), grant.key))
    plan = offline.run("dev", account_roles=ALL_ROLES)
    assert plan.of_type(SLR) == []
    assert plan.outputs["serviceLinkedRolesCreated"] == []


@pytest.mark.parametrize(("mode", "expected"), [("existing", 0), ("create", 4)])
def test_config_flag_skips_the_lookup(mode: str, expected: int) -> None:
    plan = offline.run("dev", {"serviceLinkedRoles": mode}, account_roles=ALL_ROLES[:1])
    assert len(plan.of_type(SLR)) == expected
    assert "aws:iam/getRoles:getRoles" not in plan.calls


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="labelstack:serviceLinkedRoles"):
        offline.run("dev", {"serviceLinkedRoles": "maybe"})
