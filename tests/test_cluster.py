"""EKS control plane: pinned version, private endpoint (allow-list only outside prod),
envelope-encrypted secrets, all five log types to an encrypted log group, API access
entries for admins, the OIDC provider, and the add-ons."""

from __future__ import annotations

import json
import re

import pytest

from infra.addons import RESOLVE_ON_CREATE, RESOLVE_ON_UPDATE
from infra.cluster import ADMIN_ACCESS_POLICY, LOG_TYPES
from infra.config import EKS_VERSIONS, ConfigError
from infra.offline import Plan
from tests.compute_helpers import (
    CLUSTER,
    LOG_GROUP,
    addons,
    attached_policies,
    inline_policies,
    one,
    role_by_arn,
    trust,
)

ADMINS = ["arn:aws:iam::123456789012:role/ops/platform-admin",
          "arn:aws:iam::123456789012:role/sre-oncall"]


def test_version_is_pinned_and_supported(each_stack: Plan) -> None:
    eks = one(each_stack, CLUSTER)
    assert eks.inputs["version"] in EKS_VERSIONS
    assert eks.inputs["upgradePolicy"] == {"supportType": "STANDARD"}


def test_eks_version_comes_from_config(plan_with) -> None:
    plan = plan_with("dev", eksVersion="1.32")
    assert one(plan, CLUSTER).inputs["version"] == "1.32"
    for addon in addons(plan).values():
        assert "k8s1.32" in addon.inputs["addonVersion"]  # version looked up for 1.32


def test_endpoint_is_private_by_default(each_stack: Plan) -> None:
    vpc = one(each_stack, CLUSTER).inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert vpc["endpointPublicAccess"] is False
    assert not vpc.get("publicAccessCidrs")
    assert vpc["subnetIds"] == each_stack.outputs["appSubnetIds"]


def test_non_prod_allow_list_opens_only_those_cidrs(plan_with) -> None:
    plan = plan_with("staging", clusterPublicAccessCidrs=["203.0.113.0/24"])
    vpc = one(plan, CLUSTER).inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True
    assert vpc["endpointPrivateAccess"] is True  # nodes still use the private endpoint
    assert vpc["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_prod_refuses_a_public_endpoint(plan_with) -> None:
    with pytest.raises(ConfigError, match=r"labelstack:clusterPublicAccessCidrs: .*203\.0\.113"
                       r"\.0/24.*private"):
        plan_with("prod", clusterPublicAccessCidrs=["203.0.113.0/24"])


def test_allow_list_cannot_be_the_whole_internet(plan_with) -> None:
    with pytest.raises(ConfigError, match=r"clusterPublicAccessCidrs.*0\.0\.0\.0/0"):
        plan_with("dev", clusterPublicAccessCidrs=["0.0.0.0/0"])


def test_secrets_envelope_encrypted_with_the_cluster_key(each_stack: Plan) -> None:
    eks = one(each_stack, CLUSTER)
    enc = eks.inputs["encryptionConfig"]
    assert enc["resources"] == ["secrets"]
    assert enc["provider"]["keyArn"] == each_stack.outputs["clusterKeyArn"]
    # the cluster role can use that key and no other
    role = role_by_arn(each_stack, eks.inputs["roleArn"])
    (policy,) = inline_policies(each_stack, role)
    assert {s["Resource"] for s in policy["Statement"]} == {each_stack.outputs["clusterKeyArn"]}
    assert trust(role)["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}
    assert attached_policies(each_stack, role) == {"AmazonEKSClusterPolicy"}


def test_all_log_types_to_an_encrypted_group_created_first(each_stack: Plan) -> None:
    eks = one(each_stack, CLUSTER)
    assert sorted(eks.inputs["enabledClusterLogTypes"]) == sorted(LOG_TYPES)
    assert len(set(LOG_TYPES)) == 5
    name = f"/aws/eks/{eks.inputs['name']}/cluster"
    (group,) = [g for g in each_stack.of_type(LOG_GROUP) if g.inputs["name"] == name]
    assert group.inputs["kmsKeyId"] == each_stack.outputs["logsKeyArn"]
    days = json.loads(each_stack.config["labelstack:logRetentionDays"])
    assert group.inputs["retentionInDays"] == days
    assert group.name in eks.depends_on  # exists before EKS would create its own


def test_api_authentication_and_no_implicit_creator_admin(each_stack: Plan) -> None:
    access = one(each_stack, CLUSTER).inputs["accessConfig"]
    assert access == {"authenticationMode": "API",
                      "bootstrapClusterCreatorAdminPermissions": False}


def test_admin_roles_get_access_entries_with_cluster_admin(plan_with) -> None:
    plan = plan_with("dev", adminRoleArns=ADMINS)
    entries = plan.of_type("aws:eks/accessEntry:AccessEntry")
    assert sorted(e.inputs["principalArn"] for e in entries) == sorted(ADMINS)
    assert all(e.inputs["type"] == "STANDARD" for e in entries)
    assocs = plan.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert sorted(a.inputs["principalArn"] for a in assocs) == sorted(ADMINS)
    for a in assocs:
        assert a.inputs["policyArn"].endswith(f"cluster-access-policy/{ADMIN_ACCESS_POLICY}")
        assert a.inputs["accessScope"] == {"type": "cluster"}
        assert a.inputs["clusterName"] == one(plan, CLUSTER).inputs["name"]


def test_prod_stack_admins_match_its_config(stack_plan) -> None:
    plan = stack_plan("prod")
    configured = json.loads(plan.config["labelstack:adminRoleArns"])
    entries = plan.of_type("aws:eks/accessEntry:AccessEntry")
    assert [e.inputs["principalArn"] for e in entries] == configured


def test_oidc_provider_from_the_cluster_issuer(each_stack: Plan) -> None:
    (oidc,) = each_stack.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["url"].startswith("https://oidc.eks.")  # the cluster's issuer (mock)
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert all(re.fullmatch(r"[0-9a-f]{40}", t) for t in oidc.inputs["thumbprintLists"])
    assert one(each_stack, CLUSTER).name in oidc.depends_on
    host = oidc.inputs["url"].removeprefix("https://")
    assert each_stack.outputs["oidcProviderArn"].endswith(f"oidc-provider/{host}")


def test_managed_addons_and_versions(each_stack: Plan) -> None:
    found = addons(each_stack)
    assert set(found) == {"vpc-cni", "kube-proxy", "coredns", "aws-ebs-csi-driver"}
    version = one(each_stack, CLUSTER).inputs["version"]
    for name, addon in found.items():
        assert addon.inputs["addonVersion"].startswith("v")
        assert f"{name}-k8s{version}" in addon.inputs["addonVersion"]
        assert addon.inputs["resolveConflictsOnCreate"] == RESOLVE_ON_CREATE
        assert addon.inputs["resolveConflictsOnUpdate"] == RESOLVE_ON_UPDATE
    assert one(each_stack, CLUSTER).inputs["bootstrapSelfManagedAddons"] is False


def test_vpc_cni_enforces_network_policy_with_its_own_role(each_stack: Plan) -> None:
    cni = addons(each_stack)["vpc-cni"]
    assert json.loads(cni.inputs["configurationValues"])["enableNetworkPolicy"] == "true"
    role = role_by_arn(each_stack, cni.inputs["serviceAccountRoleArn"])
    cond = trust(role)["Statement"][0]["Condition"]["StringEquals"]
    assert "system:serviceaccount:kube-system:aws-node" in cond.values()
    assert attached_policies(each_stack, role) == {"AmazonEKS_CNI_Policy"}


def test_ebs_csi_driver_has_its_own_role_for_its_service_account(each_stack: Plan) -> None:
    csi = addons(each_stack)["aws-ebs-csi-driver"]
    role = role_by_arn(each_stack, csi.inputs["serviceAccountRoleArn"])
    stmt = trust(role)["Statement"][0]
    assert stmt["Principal"]["Federated"] == each_stack.outputs["oidcProviderArn"]
    cond = stmt["Condition"]["StringEquals"]
    assert sorted(cond.values()) == ["sts.amazonaws.com",
                                     "system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    assert attached_policies(each_stack, role) == {"AmazonEBSCSIDriverPolicy"}
    (key_use,) = inline_policies(each_stack, role)
    assert {s["Resource"] for s in key_use["Statement"]} == {each_stack.outputs["dataKeyArn"]}
    for stmt in key_use["Statement"]:  # only through EC2 (volume creation)
        assert stmt["Condition"]["StringEquals"]["kms:ViaService"] == "ec2.us-east-1.amazonaws.com"


def test_cluster_deletion_protection_follows_the_profile(each_stack: Plan) -> None:
    expected = each_stack.stack in ("staging", "prod")
    assert one(each_stack, CLUSTER).inputs["deletionProtection"] is expected
