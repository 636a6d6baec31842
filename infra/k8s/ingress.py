"""Private ingress: the AWS Load Balancer Controller and Label Studio's Ingress.

The controller (official chart, ``kube-system``) runs under its own IRSA role. Its policy is
the upstream one narrowed: every write is limited to load balancers, target groups and
security groups tagged for *this* cluster (``elbv2.k8s.aws/cluster=<name>``) or to security
groups of this VPC; no WAF, WAFv2, Shield or Cognito actions (those integrations are off);
no ACM discovery (the certificate ARN is given explicitly).

The Ingress gives an internal ALB (``internet-facing`` only with ``ingressMode=public``):
HTTPS only with the ACM certificate from config, a TLS 1.2/1.3 policy, HTTP redirected to
HTTPS, access logs to the access-log bucket, deletion protection in prod, IP targets.

Teardown: the controller creates the ALB and its security groups outside Pulumi. The Ingress
depends on the controller (and, through it, on the nodes and the cluster), so
``pulumi destroy`` deletes the Ingress first; the controller's finalizer on it holds the
delete until the ALB and its security groups are gone; only then do the controller, the
nodes, the cluster and the VPC go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import charts
from infra import iam_documents as iam
from infra.identity import irsa_role
from infra.k8s.base import KubernetesBase
from infra.k8s.label_studio_values import RELEASE, SERVICE_PORT

CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_SERVICE_ACCOUNT = "aws-load-balancer-controller"
INGRESS_CLASS = "alb"
#: ELB security policy: TLS 1.3 and 1.2 only, forward-secret ciphers.
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
#: Prefix of the ALB access logs in the access-log bucket.
ACCESS_LOG_PREFIX = "alb/label-studio"
#: The Service the chart creates for our release.
LABEL_STUDIO_SERVICE = f"{RELEASE}-ls-app"
CLUSTER_TAG = "elbv2.k8s.aws/cluster"


def controller_policy(cluster_name: pulumi.Input[str], vpc_id: pulumi.Input[str],
                      certificate_arn: pulumi.Input[str], ctx: iam.AwsContext
                      ) -> dict[str, Any]:
    """The upstream controller policy, narrowed to this cluster, VPC and certificate."""
    tagged = {"StringEquals": {f"aws:ResourceTag/{CLUSTER_TAG}": cluster_name}}
    request_tagged = {"StringEquals": {f"aws:RequestTag/{CLUSTER_TAG}": cluster_name}}
    vpc_arn = pulumi.Output.concat(ctx.arn("ec2", "vpc/"), vpc_id)
    elb = ctx.arn("elasticloadbalancing", "")
    lbs = [pulumi.Output.concat(elb, p) for p in (
        "loadbalancer/app/*/*", "loadbalancer/net/*/*", "targetgroup/*/*")]
    listeners = [pulumi.Output.concat(elb, p) for p in (
        "listener/app/*/*/*", "listener/net/*/*/*", "listener-rule/app/*/*/*/*",
        "listener-rule/net/*/*/*/*")]
    security_groups = ctx.arn("ec2", "security-group/*")
    # No iam:CreateServiceLinkedRole: the stack provides the Elastic Load Balancing
    # service-linked role (infra/service_roles.py).
    return iam.document(
        {"Sid": "Describe", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses",
            "ec2:DescribeAvailabilityZones", "ec2:DescribeInternetGateways",
            "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections", "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags",
            "ec2:DescribeIpamPools", "ec2:DescribeRouteTables",
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeListenerCertificates",
            "elasticloadbalancing:DescribeSSLPolicies", "elasticloadbalancing:DescribeRules",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTrustStores",
            "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:DescribeCapacityReservation"]},
        {"Sid": "SecurityGroupsOfThisVpc", "Effect": "Allow",
         "Action": "ec2:GetSecurityGroupsForVpc", "Resource": [vpc_arn, security_groups]},
        {"Sid": "TheGivenCertificate", "Effect": "Allow", "Action": "acm:DescribeCertificate",
         "Resource": certificate_arn},
        {"Sid": "SecurityGroupsInThisVpc", "Effect": "Allow",
         "Action": "ec2:CreateSecurityGroup", "Resource": [vpc_arn, security_groups]},
        {"Sid": "TagNewSecurityGroups", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": security_groups,
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup",
                                        f"aws:RequestTag/{CLUSTER_TAG}": cluster_name}}},
        {"Sid": "ManageOwnSecurityGroups", "Effect": "Allow",
         "Action": ["ec2:CreateTags", "ec2:DeleteTags", "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"],
         "Resource": security_groups, "Condition": tagged},
        {"Sid": "NodeSecurityGroupRulesInThisVpc", "Effect": "Allow",
         "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
         "Resource": security_groups, "Condition": {"ArnEquals": {"ec2:Vpc": vpc_arn}}},
        {"Sid": "CreateTaggedLoadBalancers", "Effect": "Allow",
         "Action": ["elasticloadbalancing:CreateLoadBalancer",
                    "elasticloadbalancing:CreateTargetGroup"],
         "Resource": lbs, "Condition": request_tagged},
        {"Sid": "TagOnCreateWithThisCluster", "Effect": "Allow",
         "Action": "elasticloadbalancing:AddTags", "Resource": [*lbs, *listeners],
         "Condition": request_tagged},
        {"Sid": "ManageOwnLoadBalancers", "Effect": "Allow", "Resource": lbs,
         "Condition": tagged, "Action": [
             "elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags",
             "elasticloadbalancing:ModifyLoadBalancerAttributes",
             "elasticloadbalancing:SetIpAddressType", "elasticloadbalancing:SetSecurityGroups",
             "elasticloadbalancing:SetSubnets", "elasticloadbalancing:DeleteLoadBalancer",
             "elasticloadbalancing:ModifyTargetGroup",
             "elasticloadbalancing:ModifyTargetGroupAttributes",
             "elasticloadbalancing:DeleteTargetGroup",
             "elasticloadbalancing:RegisterTargets",
             "elasticloadbalancing:DeregisterTargets"]},
        {"Sid": "ListenersAndRulesOfOwnLoadBalancers", "Effect": "Allow",
         "Resource": [*lbs, *listeners], "Action": [
             "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
             "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule",
             "elasticloadbalancing:ModifyListener", "elasticloadbalancing:ModifyRule",
             "elasticloadbalancing:AddListenerCertificates",
             "elasticloadbalancing:RemoveListenerCertificates",
             "elasticloadbalancing:ModifyListenerAttributes"]},
    )


def controller_values(cluster_name: str, region: str, vpc_id: str, role_arn: str,
                      replicas: int) -> dict[str, Any]:
    """Values of the AWS Load Balancer Controller chart: no IMDS lookups, WAF/WAFv2/Shield
    off, IP targets, resources, PDB."""
    return {
        "clusterName": cluster_name, "region": region, "vpcId": vpc_id,
        "replicaCount": replicas,
        "serviceAccount": {"create": True, "name": CONTROLLER_SERVICE_ACCOUNT,
                           "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        "enableShield": False, "enableWaf": False, "enableWafv2": False,
        "defaultTargetType": "ip",
        "defaultSSLPolicy": SSL_POLICY,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": "500m", "memory": "256Mi"}},
        "podDisruptionBudget": {"maxUnavailable": 1},
        "podSecurityContext": {"fsGroup": 65534, "runAsNonRoot": True,
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }


def ingress_annotations(*, scheme: str, certificate_arn: str, access_log_bucket: str,
                        deletion_protection: bool, subnet_ids: Sequence[str]
                        ) -> dict[str, str]:
    """ALB settings of Label Studio's Ingress."""
    attributes = ["access_logs.s3.enabled=true", f"access_logs.s3.bucket={access_log_bucket}",
                  f"access_logs.s3.prefix={ACCESS_LOG_PREFIX}",
                  f"deletion_protection.enabled={str(deletion_protection).lower()}",
                  "routing.http.drop_invalid_header_fields.enabled=true",
                  "idle_timeout.timeout_seconds=120"]
    return {
        "alb.ingress.kubernetes.io/scheme": scheme,
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/subnets": ",".join(subnet_ids),
        "alb.ingress.kubernetes.io/listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]',
        "alb.ingress.kubernetes.io/ssl-redirect": "443",
        "alb.ingress.kubernetes.io/certificate-arn": certificate_arn,
        "alb.ingress.kubernetes.io/ssl-policy": SSL_POLICY,
        "alb.ingress.kubernetes.io/backend-protocol": "HTTP",
        # served by the pod's nginx (Django's /health would refuse the ALB's Host header:
        # the target's IP); the app container's own readiness takes unready pods out
        "alb.ingress.kubernetes.io/healthcheck-path": "/nginx_health",
        "alb.ingress.kubernetes.io/load-balancer-attributes": ",".join(attributes),
    }


def ingress_manifest(namespace: str, host: str, annotations: dict[str, str]
                     ) -> dict[str, Any]:
    """The Ingress in front of Label Studio's Service."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "label-studio", "namespace": namespace,
                     "annotations": annotations,
                     "labels": {"app.kubernetes.io/part-of": "labelstack"}},
        "spec": {"ingressClassName": INGRESS_CLASS,
                 "rules": [{"host": host, "http": {"paths": [{
                     "path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": LABEL_STUDIO_SERVICE,
                                             "port": {"number": SERVICE_PORT}}}}]}}]},
    }


@dataclass
class LoadBalancerControllerArgs:
    """Inputs of :class:`LoadBalancerController`."""

    base: KubernetesBase
    ctx: iam.AwsContext
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    certificate_arn: pulumi.Input[str]
    replicas: int = 2


class LoadBalancerController(pulumi.ComponentResource):
    """IRSA role + the official chart in kube-system."""

    chart: k8s.helm.v4.Chart

    def __init__(self, name: str, args: LoadBalancerControllerArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:k8s:LoadBalancerController", name, None, opts)
        role, policy = irsa_role(
            f"{name}-role", parent=self, namespace=CONTROLLER_NAMESPACE,
            service_account=CONTROLLER_SERVICE_ACCOUNT,
            oidc_provider_arn=args.oidc_provider_arn, oidc_issuer_url=args.oidc_issuer_url,
            policy=controller_policy(args.cluster_name, args.vpc_id, args.certificate_arn,
                                     args.ctx))
        values = pulumi.Output.all(args.cluster_name, args.ctx.region, args.vpc_id,
                                   role.arn).apply(
            lambda a: controller_values(a[0], a[1], a[2], a[3], args.replicas))
        pin = charts.AWS_LOAD_BALANCER_CONTROLLER
        # kube-system: outside the restricted namespace, so no namespace dependency here.
        self.chart = k8s.helm.v4.Chart(
            f"{name}-chart", chart=pin.chart, version=pin.version,
            repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=pin.repo),
            namespace=CONTROLLER_NAMESPACE, values=values,
            opts=pulumi.ResourceOptions(parent=self, provider=args.base.provider,
                                        depends_on=[policy, args.base.provider]))
        self.register_outputs({"role_arn": role.arn})
