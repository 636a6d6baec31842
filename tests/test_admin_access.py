"""``adminAccess=ssm``: Session Manager endpoints (also without internet) and a small admin
instance with no inbound rule, IMDSv2, an encrypted root volume, an SSM-only role and an app
subnet; nothing of it exists by default."""

from __future__ import annotations

import json

import pytest

from infra.admin_access import INSTANCE_TYPE
from infra.network import SSM_ENDPOINTS
from infra.offline import Plan
from tests.compute_helpers import attached_policies, role_by_arn
from tests.test_graph import closure, edges

ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
INSTANCE = "aws:ec2/instance:Instance"


def _services(plan: Plan) -> set[str]:
    return {e.inputs["serviceName"].rsplit(".", 1)[1] for e in plan.of_type(ENDPOINT)}


@pytest.fixture(scope="module", params=["none", "nat"])
def ssm_plan(request) -> Plan:
    from infra import offline
    return offline.run("prod", {"adminAccess": "ssm", "egressMode": request.param,
                                "profile": "dev" if request.param == "nat" else None})


def test_off_by_default(each_stack: Plan) -> None:
    assert each_stack.of_type(INSTANCE) == []
    assert not _services(each_stack) & set(SSM_ENDPOINTS)
    assert "adminInstanceId" not in each_stack.outputs


def test_session_manager_endpoints_exist_in_both_egress_modes(ssm_plan: Plan) -> None:
    assert set(SSM_ENDPOINTS) <= _services(ssm_plan)
    for ep in ssm_plan.of_type(ENDPOINT):
        if ep.inputs["serviceName"].rsplit(".", 1)[1] in SSM_ENDPOINTS:
            assert ep.inputs["privateDnsEnabled"] is True
            assert ep.inputs["securityGroupIds"] == ["network-endpoints-sg-id"]
    (instance,) = ssm_plan.of_type(INSTANCE)
    waits = closure(edges(ssm_plan), instance.key)
    assert {f"{ENDPOINT}::network-{s}" for s in SSM_ENDPOINTS} <= waits


def test_instance_posture(ssm_plan: Plan) -> None:
    (instance,) = ssm_plan.of_type(INSTANCE)
    i = instance.inputs
    assert i["instanceType"] == INSTANCE_TYPE
    assert i["associatePublicIpAddress"] is False and not i.get("keyName")
    assert i["metadataOptions"]["httpTokens"] == "required"
    assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
    root = i["rootBlockDevice"]
    assert root["encrypted"] is True and root["kmsKeyId"] == ssm_plan.outputs["dataKeyArn"]
    assert i["subnetId"] in ssm_plan.outputs["appSubnetIds"]
    assert ssm_plan.outputs["adminInstanceId"] == "admin-instance-id"


def test_no_inbound_and_https_into_the_vpc_only(ssm_plan: Plan) -> None:
    sg = ssm_plan.named("admin-sg").inputs
    vpc_cidr = ssm_plan.of_type("aws:ec2/vpc:Vpc")[0].inputs["cidrBlock"]
    assert sg.get("ingress", []) == []
    assert [(e["fromPort"], e["toPort"], e["cidrBlocks"]) for e in sg["egress"]] == [
        (443, 443, [vpc_cidr])]
    # the cluster API admits the instance on 443, by security group, not by CIDR
    rule = ssm_plan.named("admin-to-cluster-api").inputs
    assert rule["referencedSecurityGroupId"] == "admin-sg-id"
    assert rule["securityGroupId"] == ssm_plan.outputs["clusterSecurityGroupId"]
    assert (rule["fromPort"], rule["toPort"]) == (443, 443) and "cidrIpv4" not in rule


def test_instance_role_can_only_talk_to_ssm(ssm_plan: Plan) -> None:
    profile = ssm_plan.named("admin-profile").inputs
    role = role_by_arn(ssm_plan, f"arn:aws:iam::0:role/{profile['role']}")
    assert attached_policies(ssm_plan, role) == {"AmazonSSMManagedInstanceCore"}
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    assert not [p for p in ssm_plan.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == profile["role"]]


def test_the_pack_passes_the_admin_mode(ssm_plan: Plan) -> None:
    from policies.offline import evaluate
    found = [v for v in evaluate(ssm_plan) if v.mandatory]
    assert found == []
