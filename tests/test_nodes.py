"""Managed node groups: on-demand system pool and tainted NVIDIA GPU pool, sized by profile;
launch templates with IMDSv2, CMK-encrypted roots and no SSH key; private subnets only; a
node role with the minimal managed policies."""

from __future__ import annotations

import json

from infra.config import PROFILES
from infra.nodes import GPU_TAINT, IMDS_HOP_LIMIT, NODE_POLICIES, POOL_LABEL
from infra.offline import Plan
from tests.compute_helpers import (
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    attached_policies,
    by_id,
    inline_policies,
    node_groups,
    role_by_arn,
    trust,
)


def test_two_pools_with_the_right_ami_types(each_stack: Plan) -> None:
    groups = node_groups(each_stack)
    assert set(groups) == {"system", "gpu"}
    assert groups["system"].inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert groups["gpu"].inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    for g in groups.values():
        assert g.inputs["capacityType"] == "ON_DEMAND"
        assert g.inputs["version"] == each_stack.config.get("labelstack:eksVersion", "1.34")


def test_gpu_taint_and_labels(each_stack: Plan) -> None:
    groups = node_groups(each_stack)
    gpu, system = groups["gpu"], groups["system"]
    assert gpu.inputs["taints"] == [GPU_TAINT]
    assert GPU_TAINT == {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
    assert gpu.inputs["labels"] == {POOL_LABEL: "gpu", "labelstack.io/accelerator": "nvidia"}
    assert not system.inputs.get("taints")  # system pods need no toleration
    assert system.inputs["labels"] == {POOL_LABEL: "system"}


def test_instance_types_come_from_config(each_stack: Plan, plan_with) -> None:
    groups = node_groups(each_stack)
    gpu_types = json.loads(each_stack.config.get("labelstack:gpuInstanceTypes", '["g5.xlarge"]'))
    assert groups["gpu"].inputs["instanceTypes"] == gpu_types
    assert groups["system"].inputs["instanceTypes"] == ["m6i.large"]
    other = node_groups(plan_with("dev", gpuInstanceTypes=["g6e.xlarge"],
                                  systemInstanceTypes=["m7i.large", "m6i.large"]))
    assert other["gpu"].inputs["instanceTypes"] == ["g6e.xlarge"]
    assert other["system"].inputs["instanceTypes"] == ["m7i.large", "m6i.large"]


def test_sizing_by_profile(each_stack: Plan) -> None:
    posture = PROFILES[each_stack.config["labelstack:profile"]]
    groups = node_groups(each_stack)
    gpu = groups["gpu"].inputs["scalingConfig"]
    gpu_max = json.loads(each_stack.config.get("labelstack:gpuMaxSize", "2"))
    assert gpu == {"minSize": posture.gpu_min_size, "desiredSize": posture.gpu_min_size,
                   "maxSize": gpu_max}
    system = groups["system"].inputs["scalingConfig"]
    assert system["minSize"] == system["desiredSize"] == posture.system_min_size
    assert system["maxSize"] > system["minSize"]
    if each_stack.stack == "prod":
        assert gpu["minSize"] == 1 and system["minSize"] >= 3
    else:
        assert gpu["minSize"] == 0  # GPUs scale to zero outside prod
    if each_stack.stack == "ephemeral":
        assert gpu["maxSize"] == 1 and system["minSize"] == 1


def test_nodes_only_in_private_app_subnets(each_stack: Plan, plan_with) -> None:
    for plan in (each_stack, plan_with(each_stack.stack, ingressMode="public")):
        public = set(plan.outputs["publicSubnetIds"])
        for g in plan.of_type(NODE_GROUP):
            assert g.inputs["subnetIds"] == plan.outputs["appSubnetIds"]
            assert not public & set(g.inputs["subnetIds"])
            assert "remoteAccess" not in g.inputs  # no SSH access


def test_launch_templates_require_imdsv2_and_encrypt_the_root(each_stack: Plan) -> None:
    groups = node_groups(each_stack)
    templates = each_stack.of_type(LAUNCH_TEMPLATE)
    assert len(templates) == len(groups)
    for g in groups.values():
        lt = by_id(each_stack, g.inputs["launchTemplate"]["id"])
        assert lt.type == LAUNCH_TEMPLATE
        meta = lt.inputs["metadataOptions"]
        assert meta["httpTokens"] == "required"
        assert meta["httpEndpoint"] == "enabled"
        assert meta["httpPutResponseHopLimit"] == IMDS_HOP_LIMIT == 1
        (root,) = lt.inputs["blockDeviceMappings"]
        assert root["deviceName"] == "/dev/xvda"
        assert root["ebs"]["encrypted"] == "true"
        assert root["ebs"]["kmsKeyId"] == each_stack.outputs["dataKeyArn"]
        assert "keyName" not in lt.inputs
        assert "imageId" not in lt.inputs  # EKS picks the AMI of the ami type
        assert "vpcSecurityGroupIds" not in lt.inputs  # EKS attaches the cluster SG


def test_node_role_is_minimal(each_stack: Plan) -> None:
    roles = {g.inputs["nodeRoleArn"] for g in each_stack.of_type(NODE_GROUP)}
    assert len(roles) == 1
    role = role_by_arn(each_stack, roles.pop())
    assert trust(role)["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert attached_policies(each_stack, role) == set(NODE_POLICIES)
    assert "AmazonEKS_CNI_Policy" not in NODE_POLICIES  # vpc-cni has its own IRSA role
    assert inline_policies(each_stack, role) == []


def test_autoscaling_may_use_the_volume_key(each_stack: Plan) -> None:
    (grant,) = each_stack.of_type("aws:kms/grant:Grant")
    assert grant.inputs["keyId"] == each_stack.outputs["dataKeyArn"]
    assert grant.inputs["granteePrincipal"].endswith(
        ":role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
    assert {"Decrypt", "GenerateDataKeyWithoutPlaintext", "CreateGrant"} <= set(
        grant.inputs["operations"])
    for g in each_stack.of_type(NODE_GROUP):
        assert grant.name in g.depends_on


def test_launched_instances_and_volumes_carry_the_standard_tags(each_stack: Plan) -> None:
    for g in node_groups(each_stack).values():
        lt = by_id(each_stack, g.inputs["launchTemplate"]["id"])
        specs = {s["resourceType"]: s["tags"] for s in lt.inputs["tagSpecifications"]}
        assert set(specs) == {"instance", "volume", "network-interface"}
        for tags in specs.values():
            assert tags["Project"] == "labelstack"
            assert tags["Environment"] == each_stack.config["labelstack:profile"]
            assert tags["Stack"] == each_stack.stack
            assert tags[POOL_LABEL] == g.inputs["labels"][POOL_LABEL]
