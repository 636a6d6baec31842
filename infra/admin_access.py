"""Opt-in admin access (``adminAccess=ssm``): a small instance Session Manager reaches.

The instance is a hop, not a workstation: operators run
``aws ssm start-session --document-name AWS-StartPortForwardingSessionToRemoteHost`` with
their own credentials to forward a local port to the private EKS API (or the database), and
authenticate to the cluster as a role in ``adminRoleArns``. The instance itself holds no
cluster or data permissions: its role has ``AmazonSSMManagedInstanceCore`` only.

Posture: an app subnet, no public IP, no SSH key, a security group with no inbound rule and
HTTPS out to the VPC only (the SSM endpoints, the EKS API's private endpoint), IMDSv2 with one
hop, a CMK-encrypted root volume. The EKS cluster security group admits 443 from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.cluster import managed_policy
from infra.nodes import ec2_trust

#: Small Graviton instance; port forwarding needs little.
INSTANCE_TYPE = "t4g.micro"
#: Public SSM parameter of the latest Amazon Linux 2023 AMI (SSM agent preinstalled).
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
ROOT_VOLUME_GIB = 10
HTTPS = 443


@dataclass
class AdminAccessArgs:
    """Inputs of :class:`AdminAccess`."""

    ctx: iam.AwsContext
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    #: An app subnet (private; never a public one).
    subnet_id: pulumi.Input[str]
    #: CMK of the root volume.
    volume_key_arn: pulumi.Input[str]
    #: The EKS cluster security group (its API endpoint ENIs): gets 443 from the instance.
    cluster_security_group_id: pulumi.Input[str]
    #: What must exist before the instance registers with SSM (the SSM endpoints).
    wait_for: list[pulumi.Resource] | None = None


class AdminAccess(pulumi.ComponentResource):
    """The admin instance, its role, profile and security group."""

    instance: aws.ec2.Instance
    security_group: aws.ec2.SecurityGroup

    def __init__(self, name: str, args: AdminAccessArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:access:AdminAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(f"{name}-role", description="Admin instance: SSM Session Manager only",
                            assume_role_policy=iam.to_json(ec2_trust()), opts=child)
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-role-ssm", role=role.name,
            policy_arn=managed_policy(args.ctx, "AmazonSSMManagedInstanceCore"), opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id,
            description="Admin instance: no inbound; HTTPS to the VPC (SSM endpoints, EKS API)",
            ingress=[],
            egress=[aws.ec2.SecurityGroupEgressArgs(
                description="HTTPS to SSM endpoints and the private EKS API", protocol="tcp",
                from_port=HTTPS, to_port=HTTPS, cidr_blocks=[args.vpc_cidr])],
            opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-to-cluster-api", security_group_id=args.cluster_security_group_id,
            referenced_security_group_id=self.security_group.id, ip_protocol="tcp",
            from_port=HTTPS, to_port=HTTPS,
            description="EKS API from the admin instance (SSM port forwarding)", opts=child)
        ami = aws.ssm.get_parameter_output(name=AMI_PARAMETER)
        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=ami.value,
            instance_type=INSTANCE_TYPE,
            subnet_id=args.subnet_id,
            associate_public_ip_address=False,
            vpc_security_group_ids=[self.security_group.id],
            iam_instance_profile=profile.name,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                instance_metadata_tags="disabled"),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                encrypted=True, kms_key_id=args.volume_key_arn, volume_type="gp3",
                volume_size=ROOT_VOLUME_GIB, delete_on_termination=True),
            monitoring=True,
            ebs_optimized=True,
            tags={"Name": f"labelstack-{pulumi.get_stack()}-admin"},
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[attachment, *(args.wait_for or [])],
                # a newer AMI must not replace the hop; patch it with SSM Patch Manager
                ignore_changes=["ami"]))
        self.register_outputs({"instance_id": self.instance.id,
                               "security_group_id": self.security_group.id})
