"""Managed node groups: an on-demand system group and a tainted NVIDIA GPU group.

Both launch from templates that require IMDSv2 with a hop limit of 1 (pods that are not on
the host network cannot reach the node role's credentials; workloads use IRSA), encrypt the
root volume with the CMK and carry no SSH key. Nodes live in the private app subnets only and
get the EKS cluster security group (EKS attaches it when the template names none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.cluster import managed_policy

#: Node role policies. The CNI policy is deliberately absent: vpc-cni has its own IRSA role.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
#: Instance metadata: IMDSv2 only, one hop (host-network agents only).
IMDS_HOP_LIMIT = 1
#: The taint that keeps everything but GPU workloads off the GPU nodes.
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
#: Node label selecting a pool (``labelstack.io/node-pool``: system | gpu).
POOL_LABEL = "labelstack.io/node-pool"
#: Tag prefix of the Cluster Autoscaler's scale-from-zero node templates.
NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute",
            "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
#: NVIDIA GPUs per instance type (EC2 documentation), for the autoscaler's node template.
GPUS_PER_INSTANCE = {
    **{f"{fam}.{size}": 1 for fam in ("g4dn", "g5", "g6", "g6e")
       for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    **{f"{fam}.12xlarge": 4 for fam in ("g4dn", "g5", "g6", "g6e")},
    **{f"{fam}.24xlarge": 4 for fam in ("g5", "g6", "g6e")},
    **{f"{fam}.48xlarge": 8 for fam in ("g5", "g6", "g6e")},
    "g4dn.metal": 8, "p4d.24xlarge": 8, "p5.48xlarge": 8,
}
#: What the Auto Scaling service-linked role may do with the CMK to create encrypted volumes.
ASG_KEY_OPERATIONS = ("Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GenerateDataKey",
                      "GenerateDataKeyWithoutPlaintext", "DescribeKey", "CreateGrant")


@dataclass
class NodePool:
    """One managed node group."""

    name: str
    ami_type: str
    instance_types: Sequence[str]
    min_size: int
    max_size: int
    disk_gib: int
    labels: Mapping[str, str]
    taints: Sequence[Mapping[str, str]] = ()
    #: GPUs per node (``nvidia.com/gpu`` capacity); 0 for CPU pools.
    gpus: int = 0

    def autoscaler_template_tags(self) -> dict[str, str]:
        """Tags the Cluster Autoscaler reads to build a node of this group while it has none
        (scale from zero): its labels, taints and GPU capacity. Managed node groups do not
        pass their tags on to their Auto Scaling group, so :class:`Nodes` tags that group."""
        tags = {f"{NODE_TEMPLATE}/label/{k}": v for k, v in self.labels.items()}
        for t in self.taints:
            tags[f"{NODE_TEMPLATE}/taint/{t['key']}"] = f"{t['value']}:{_EFFECTS[t['effect']]}"
        if self.gpus:
            tags[f"{NODE_TEMPLATE}/resources/nvidia.com/gpu"] = str(self.gpus)
        return tags


def gpus_per_node(instance_types: Sequence[str]) -> int:
    """NVIDIA GPUs of each of ``instance_types`` (all must have the same number)."""
    counts = {t: GPUS_PER_INSTANCE.get(t) for t in instance_types}
    unknown = sorted(t for t, n in counts.items() if n is None)
    if unknown:
        known = ", ".join(sorted(GPUS_PER_INSTANCE))
        raise ValueError(f"labelstack:gpuInstanceTypes: {', '.join(unknown)} not in the GPU "
                         f"table of infra/nodes.py (known: {known}); use a listed type or add "
                         "it with its GPU count")
    if len(set(counts.values())) > 1:
        raise ValueError(f"labelstack:gpuInstanceTypes: {counts} differ in GPU count; the "
                         "autoscaler builds one node template per group: list types with the "
                         "same number of GPUs")
    return next(iter(counts.values()))


@dataclass
class NodesArgs:
    """Inputs of :class:`Nodes`."""

    cluster_name: pulumi.Input[str]
    version: str
    #: Private app subnets (never public ones).
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    #: CMK for the root volumes.
    volume_key_arn: pulumi.Input[str]
    pools: Sequence[NodePool]
    ctx: iam.AwsContext
    #: Tags for the instances, volumes and ENIs the templates launch (node groups do not
    #: pass their own tags on); the stack's standard tags.
    instance_tags: Mapping[str, str] = field(default_factory=dict)
    #: What must exist before nodes join: the network (VPC endpoints, routes) and the
    #: vpc-cni and kube-proxy add-ons.
    wait_for: Sequence[pulumi.Resource] = ()
    #: The Auto Scaling service-linked role when this stack creates it: KMS refuses a grant
    #: to a principal that does not exist yet (see :mod:`infra.service_roles`).
    grant_after: Sequence[pulumi.Resource] = ()


def pools_for(system_types: Sequence[str], gpu_types: Sequence[str], system_min: int,
              gpu_min: int, gpu_max: int) -> list[NodePool]:
    """The two pools of this bundle, sized by the profile."""
    return [
        NodePool("system", "AL2023_x86_64_STANDARD", system_types, system_min, system_min + 2,
                 50, {POOL_LABEL: "system"}),
        NodePool("gpu", "AL2023_x86_64_NVIDIA", gpu_types, gpu_min, max(gpu_max, gpu_min), 100,
                 {POOL_LABEL: "gpu", "labelstack.io/accelerator": "nvidia"}, (GPU_TAINT,),
                 gpus=gpus_per_node(gpu_types)),
    ]


def ec2_trust() -> dict:
    """Trust policy of the node role: EC2 instances only."""
    return iam.document({"Sid": "AssumeFromEc2", "Effect": "Allow",
                         "Principal": {"Service": "ec2.amazonaws.com"},
                         "Action": "sts:AssumeRole"})


class Nodes(pulumi.ComponentResource):
    """The node role, one launch template and one managed node group per pool."""

    groups: dict[str, aws.eks.NodeGroup]

    def __init__(self, name: str, args: NodesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:compute:Nodes", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(f"{name}-role", description="EKS managed nodes",
                                 assume_role_policy=iam.to_json(ec2_trust()), opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-role-{p}", role=self.role.name,
                                         policy_arn=managed_policy(args.ctx, p), opts=child)
            for p in NODE_POLICIES]

        # The root key's policy delegates to IAM only; the Auto Scaling service-linked role
        # that launches managed nodes gets the key through a grant instead.
        asg_role = pulumi.Output.all(args.ctx.partition, args.ctx.account_id).apply(
            lambda a: f"arn:{a[0]}:iam::{a[1]}:role/aws-service-role/autoscaling.amazonaws.com/"
            "AWSServiceRoleForAutoScaling")
        grant = aws.kms.Grant(f"{name}-volume-key-grant", key_id=args.volume_key_arn,
                              grantee_principal=asg_role, operations=list(ASG_KEY_OPERATIONS),
                              opts=pulumi.ResourceOptions(parent=self,
                                                          depends_on=list(args.grant_after)))

        self.launch_templates: dict[str, aws.ec2.LaunchTemplate] = {}
        self.groups = {}
        for pool in args.pools:
            lt = aws.ec2.LaunchTemplate(
                f"{name}-{pool.name}-lt",
                description=f"labelstack {pool.name} nodes: IMDSv2, encrypted root, no SSH key",
                metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required",
                    http_put_response_hop_limit=IMDS_HOP_LIMIT,
                    instance_metadata_tags="disabled"),
                block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name="/dev/xvda",
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_size=pool.disk_gib, volume_type="gp3", encrypted="true",
                        kms_key_id=args.volume_key_arn, delete_on_termination="true"))],
                monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
                tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                    resource_type=kind, tags={**args.instance_tags, POOL_LABEL: pool.name})
                    for kind in ("instance", "volume", "network-interface")]
                if args.instance_tags else None,
                update_default_version=True,
                opts=child)
            group = aws.eks.NodeGroup(
                f"{name}-{pool.name}",
                cluster_name=args.cluster_name,
                version=args.version,
                node_role_arn=self.role.arn,
                subnet_ids=args.subnet_ids,
                ami_type=pool.ami_type,
                capacity_type="ON_DEMAND",
                instance_types=list(pool.instance_types),
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=pool.min_size, desired_size=pool.min_size, max_size=pool.max_size),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                labels=dict(pool.labels),
                taints=[aws.eks.NodeGroupTaintArgs(**t) for t in pool.taints] or None,
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                    id=lt.id, version=lt.latest_version.apply(str)),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=[*attachments, grant, *args.wait_for],
                    # the cluster autoscaler owns the running size
                    ignore_changes=["scalingConfig.desiredSize"]))
            self.launch_templates[pool.name] = lt
            self.groups[pool.name] = group
            if pool.taints or pool.gpus:  # scale from zero: what a node would look like
                asg = group.resources.apply(lambda r: r[0].autoscaling_groups[0].name)
                for i, (key, value) in enumerate(sorted(pool.autoscaler_template_tags().items())):
                    aws.autoscaling.Tag(
                        f"{name}-{pool.name}-template-{i}", autoscaling_group_name=asg,
                        tag=aws.autoscaling.TagTagArgs(key=key, value=value,
                                                       propagate_at_launch=False),
                        opts=child)

        self.register_outputs({"node_role_arn": self.role.arn,
                               **{f"{k}_node_group": g.node_group_name
                                  for k, g in self.groups.items()}})
