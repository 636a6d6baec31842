"""The EKS control plane: private API endpoint, envelope-encrypted secrets, all control-plane
logs to an encrypted log group, access entries for named admins, and the IAM OIDC provider
that lets workload roles trust Kubernetes service accounts (IRSA).

Plain ``pulumi_aws.eks`` resources (not the ``pulumi-eks`` component) so every child stays
visible to the tests and the policy pack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam

#: The five control-plane log types EKS can ship; all of them are enabled.
LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
#: SHA-1 thumbprint of the root CA behind ``oidc.eks.<region>.amazonaws.com``. IAM validates
#: EKS issuers against its own trusted CAs and ignores it, but the API still stores a list.
EKS_OIDC_ROOT_CA_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
#: EKS access policy granted to ``adminRoleArns`` (cluster scope).
ADMIN_ACCESS_POLICY = "AmazonEKSClusterAdminPolicy"


@dataclass
class ClusterArgs:
    """Inputs of :class:`Cluster`. Defaults are the secure choice."""

    #: Physical cluster name (also names the log group ``/aws/eks/<name>/cluster``).
    cluster_name: str
    version: str
    #: Private app subnets for the control-plane network interfaces.
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    #: CMK for Kubernetes secrets envelope encryption.
    secrets_key_arn: pulumi.Input[str]
    #: CMK for the control-plane log group.
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    ctx: iam.AwsContext
    #: CIDRs allowed to the public API endpoint; empty (default) means no public endpoint.
    public_access_cidrs: Sequence[str] = ()
    #: IAM role ARNs granted cluster-admin through access entries.
    admin_role_arns: Sequence[str] = ()
    #: EKS-side deletion protection (staging, prod).
    deletion_protection: bool = False
    #: Extra security groups for the control-plane ENIs (none by default).
    security_group_ids: Sequence[pulumi.Input[str]] = field(default_factory=tuple)


def eks_trust() -> dict:
    """Trust policy of the cluster role: the EKS service only."""
    return iam.document({"Sid": "AssumeFromEks", "Effect": "Allow",
                         "Principal": {"Service": "eks.amazonaws.com"},
                         "Action": ["sts:AssumeRole", "sts:TagSession"]})


def secrets_key_use(key_arn: pulumi.Input[str]) -> dict:
    """What EKS needs on the secrets CMK (the key policy delegates to IAM)."""
    return iam.document({"Sid": "EnvelopeEncryptSecrets", "Effect": "Allow",
                         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants",
                                    "kms:DescribeKey"],
                         "Resource": key_arn})


def managed_policy(ctx: iam.AwsContext, name: str) -> pulumi.Output[str]:
    """ARN of an AWS managed policy in the stack's partition."""
    return ctx.partition.apply(lambda p: f"arn:{p}:iam::aws:policy/{name}")


def _role_label(arn: str) -> str:
    return arn.rsplit("/", 1)[1].lower()


class Cluster(pulumi.ComponentResource):
    """A private EKS cluster (``authenticationMode=API``) and its OIDC provider."""

    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    #: The EKS-managed cluster security group: on the control plane and every managed node.
    cluster_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:compute:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(f"{name}-role", description="EKS control plane",
                                 assume_role_policy=iam.to_json(eks_trust()), opts=child)
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-role-cluster-policy", role=self.role.name,
            policy_arn=managed_policy(args.ctx, "AmazonEKSClusterPolicy"), opts=child)
        key_use = aws.iam.RolePolicy(f"{name}-role-secrets-key", role=self.role.id,
                                     policy=iam.to_json(secrets_key_use(args.secrets_key_arn)),
                                     opts=child)

        # Created before the cluster so EKS does not create it unencrypted with no expiry.
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days, kms_key_id=args.logs_key_arn,
            opts=child)

        public = bool(args.public_access_cidrs)
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.version,
            role_arn=self.role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=public,
                public_access_cidrs=list(args.public_access_cidrs) if public else None,
                security_group_ids=list(args.security_group_ids) or None),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(
                    key_arn=args.secrets_key_arn),
                resources=["secrets"]),
            enabled_cluster_log_types=list(LOG_TYPES),
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=False),
            # vpc-cni, kube-proxy and CoreDNS come as managed add-ons (infra/addons.py).
            bootstrap_self_managed_addons=False,
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            kubernetes_network_config=aws.eks.ClusterKubernetesNetworkConfigArgs(
                ip_family="ipv4"),
            deletion_protection=args.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[policy, key_use, self.log_group]))

        self.name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.cluster_security_group_id = self.cluster.vpc_config.cluster_security_group_id
        self.oidc_issuer_url = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)

        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=self.oidc_issuer_url, client_id_lists=["sts.amazonaws.com"],
            thumbprint_lists=[EKS_OIDC_ROOT_CA_THUMBPRINT], opts=child)
        self.oidc_provider_arn = self.oidc_provider.arn

        if not args.admin_role_arns:
            pulumi.log.warn("labelstack:adminRoleArns is empty: no IAM role can administer "
                            f"cluster {args.cluster_name}; list your operators' roles")
        admin_policy = args.ctx.partition.apply(
            lambda p: f"arn:{p}:eks::aws:cluster-access-policy/{ADMIN_ACCESS_POLICY}")
        self.access_entries: list[aws.eks.AccessEntry] = []
        for arn in args.admin_role_arns:
            label = _role_label(arn)
            entry = aws.eks.AccessEntry(f"{name}-admin-{label}", cluster_name=self.cluster.name,
                                        principal_arn=arn, type="STANDARD", opts=child)
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{label}-policy", cluster_name=self.cluster.name,
                principal_arn=entry.principal_arn, policy_arn=admin_policy,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child)
            self.access_entries.append(entry)

        self.register_outputs({"name": self.name, "endpoint": self.endpoint,
                               "oidc_provider_arn": self.oidc_provider_arn,
                               "cluster_security_group_id": self.cluster_security_group_id})
