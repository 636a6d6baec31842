"""EKS managed add-ons, in the two phases a cluster created with
``bootstrapSelfManagedAddons=false`` needs:

* :class:`BaseAddons` before the nodes: ``vpc-cni`` (network-policy enforcement on, its own
  IRSA role so the node role carries no CNI policy) and ``kube-proxy``; nodes do not become
  Ready without them.
* :class:`WorkloadAddons` after the nodes: ``coredns`` and ``aws-ebs-csi-driver`` (its own
  IRSA role, with use of the volume CMK); their pods need somewhere to run.

Versions: each add-on is pinned to the version EKS marks as the default for the cluster's
Kubernetes version (``eks.getAddonVersion`` with ``mostRecent=false``), read at deploy time
and recorded in state; an EKS version bump therefore moves the add-ons with it. Conflicts:
``OVERWRITE`` on create (take over the fields EKS manages), ``PRESERVE`` on update (never
discard changes made in the cluster without review).

No Pod Identity agent: workload roles use IRSA through the cluster's OIDC provider.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.cluster import managed_policy

RESOLVE_ON_CREATE = "OVERWRITE"
RESOLVE_ON_UPDATE = "PRESERVE"
#: vpc-cni configuration: enforce Kubernetes NetworkPolicy in the node agent.
VPC_CNI_CONFIG = {"enableNetworkPolicy": "true"}
#: Service accounts the add-on roles trust (kube-system).
CNI_SERVICE_ACCOUNT = "aws-node"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"


@dataclass
class AddonsArgs:
    """Inputs shared by both add-on phases."""

    cluster_name: pulumi.Input[str]
    version: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    ctx: iam.AwsContext
    #: CMK of the EBS volumes the CSI driver creates (WorkloadAddons only).
    volume_key_arn: pulumi.Input[str] | None = None
    #: Resources the add-ons wait for (the node groups, for WorkloadAddons).
    wait_for: Sequence[pulumi.Resource] = ()


def ebs_csi_key_use(key_arn: pulumi.Input[str], ctx: iam.AwsContext) -> dict:
    """KMS use the EBS CSI controller needs for CMK-encrypted volumes, through EC2 only."""
    via_ec2 = {"StringEquals": {"kms:ViaService": ctx.service("ec2.{region}")}}
    return iam.document(
        {"Sid": "GrantsForEbsOnly", "Effect": "Allow",
         "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
         "Resource": key_arn, "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"},
                                            **via_ec2}},
        {"Sid": "UseVolumeKey", "Effect": "Allow",
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                    "kms:DescribeKey"],
         "Resource": key_arn, "Condition": via_ec2})


class _AddonFactory(pulumi.ComponentResource):
    """Shared helpers: IRSA roles for kube-system service accounts and pinned add-ons."""

    def __init__(self, typ: str, name: str, args: AddonsArgs,
                 opts: pulumi.ResourceOptions | None) -> None:
        super().__init__(typ, name, None, opts)
        self._args = args
        self.addons: dict[str, aws.eks.Addon] = {}

    def _role(self, name: str, service_account: str, policy: str) -> aws.iam.Role:
        a = self._args
        trust = iam.irsa_trust(a.oidc_provider_arn, a.oidc_issuer_url, "kube-system",
                               service_account)
        role = aws.iam.Role(name, description=f"IRSA: kube-system/{service_account}",
                            assume_role_policy=iam.to_json(trust),
                            opts=pulumi.ResourceOptions(parent=self))
        aws.iam.RolePolicyAttachment(f"{name}-{policy.rsplit('/', 1)[-1]}", role=role.name,
                                     policy_arn=managed_policy(a.ctx, policy),
                                     opts=pulumi.ResourceOptions(parent=self))
        return role

    def _addon(self, name: str, addon: str, *, role: aws.iam.Role | None = None,
               configuration: dict | None = None,
               depends_on: Sequence[pulumi.Resource] = ()) -> aws.eks.Addon:
        a = self._args
        version = aws.eks.get_addon_version_output(addon_name=addon,
                                                   kubernetes_version=a.version,
                                                   most_recent=False)
        res = aws.eks.Addon(
            f"{name}-{addon}", cluster_name=a.cluster_name, addon_name=addon,
            addon_version=version.version,
            service_account_role_arn=role.arn if role else None,
            configuration_values=json.dumps(configuration) if configuration else None,
            resolve_conflicts_on_create=RESOLVE_ON_CREATE,
            resolve_conflicts_on_update=RESOLVE_ON_UPDATE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*a.wait_for, *depends_on]))
        self.addons[addon] = res
        return res


class BaseAddons(_AddonFactory):
    """vpc-cni (network policy on, own IRSA role) and kube-proxy: needed before nodes join."""

    def __init__(self, name: str, args: AddonsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:compute:BaseAddons", name, args, opts)
        self.cni_role = self._role(f"{name}-vpc-cni-role", CNI_SERVICE_ACCOUNT,
                                   "AmazonEKS_CNI_Policy")
        self._addon(name, "vpc-cni", role=self.cni_role, configuration=VPC_CNI_CONFIG)
        self._addon(name, "kube-proxy")
        self.register_outputs({k: v.addon_version for k, v in self.addons.items()})


class WorkloadAddons(_AddonFactory):
    """CoreDNS and the EBS CSI driver (own IRSA role): scheduled once nodes exist."""

    def __init__(self, name: str, args: AddonsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:compute:WorkloadAddons", name, args, opts)
        self._addon(name, "coredns")
        self.ebs_csi_role = self._role(f"{name}-ebs-csi-role", EBS_CSI_SERVICE_ACCOUNT,
                                       "service-role/AmazonEBSCSIDriverPolicy")
        deps: list[pulumi.Resource] = []
        if args.volume_key_arn is not None:
            deps.append(aws.iam.RolePolicy(
                f"{name}-ebs-csi-role-volume-key", role=self.ebs_csi_role.id,
                policy=iam.to_json(ebs_csi_key_use(args.volume_key_arn, args.ctx)),
                opts=pulumi.ResourceOptions(parent=self)))
        self._addon(name, "aws-ebs-csi-driver", role=self.ebs_csi_role, depends_on=deps)
        self.register_outputs({k: v.addon_version for k, v in self.addons.items()})
