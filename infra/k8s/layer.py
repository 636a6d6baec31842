"""The Kubernetes layer of the stack: base -> External Secrets and the admin credentials ->
load balancer controller -> Label Studio (and its Ingress). Called by
:func:`infra.program.build` after the compute plane and workload identity."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra import config
from infra.database import DB_NAME, MASTER_USER
from infra.k8s.base import KubernetesBase, KubernetesBaseArgs
from infra.k8s.bootstrap_job import AdminCredentials, AdminCredentialsArgs
from infra.k8s.ingress import LoadBalancerController, LoadBalancerControllerArgs
from infra.k8s.label_studio import LabelStudio, LabelStudioArgs
from infra.k8s.netpol import NetworkRanges
from infra.k8s.secrets import ExternalSecrets, ExternalSecretsArgs
from infra.network import plan_subnets

if TYPE_CHECKING:
    from infra.identity import WorkloadIdentity
    from infra.program import ComputePlane, DataPlane


def eks_service_cidr(vpc_cidr: str) -> str:
    """The Service range EKS picks when none is given: 172.20.0.0/16 for a VPC inside
    10.0.0.0/8, else 10.100.0.0/16."""
    inside_ten = ipaddress.ip_network(vpc_cidr).subnet_of(ipaddress.ip_network("10.0.0.0/8"))
    return "172.20.0.0/16" if inside_ten else "10.100.0.0/16"


def service_cidr(cluster: aws.eks.Cluster, vpc_cidr: str) -> pulumi.Output[list[str]]:
    """The cluster's Service range as EKS reports it (known once the cluster exists), else
    the range EKS picks by default for this VPC."""
    def pick(network: Any) -> list[str]:
        reported = getattr(network, "service_ipv4_cidr", None) if network else None
        return [reported or eks_service_cidr(vpc_cidr)]
    return cluster.kubernetes_network_config.apply(pick)


def require_site(cfg: config.StackConfig) -> None:
    """The keys the Kubernetes layer cannot do without; a ConfigError names each one."""
    missing = []
    if not cfg.label_studio_origin:
        missing.append(config._describe(
            "labelStudioOrigin", "", "required: the https origin users open, e.g. "
            "https://labels.example.org (a DNS name covered by certificateArn)"))
    if not cfg.certificate_arn:
        missing.append(config._describe(
            "certificateArn", "", "required: the ACM certificate ARN of the Label Studio "
            "host (arn:aws:acm:<region>:<account>:certificate/<id>)"))
    if not cfg.label_studio_image_tag:
        missing.append(config._describe(
            "labelStudioImageTag", "", "required: <version>@sha256:<digest> of the Label "
            "Studio image you deploy (e.g. from `crane digest heartexlabs/label-studio:1.23.2`)"))
    if missing:
        raise config.ConfigError("invalid stack configuration:\n  " + "\n  ".join(missing))


@dataclass
class KubernetesLayer:
    """The layer's components (the ML layer takes ``base`` and ``admin``)."""

    base: KubernetesBase
    secrets: ExternalSecrets
    #: Label Studio's first user and API token (the Secret its pods read at start).
    admin: AdminCredentials
    controller: LoadBalancerController
    label_studio: LabelStudio


def kubernetes_layer(cfg: config.StackConfig, data: DataPlane, compute: ComputePlane,
                     identity: WorkloadIdentity) -> KubernetesLayer:
    """Declare the layer; teardown order follows the dependencies (see docs/kubernetes.md)."""
    require_site(cfg)
    cluster = compute.cluster.cluster
    nodes = list(compute.nodes.groups.values())
    base = KubernetesBase("k8s", KubernetesBaseArgs(
        cluster_name=cluster.name, endpoint=cluster.endpoint,
        ca_data=cluster.certificate_authority.apply(lambda c: c.data),
        region=data.ctx.region, kubernetes_version=cfg.eks_version,
        namespace=cfg.namespace, wait_for=nodes))
    secrets = ExternalSecrets("k8s-secrets", ExternalSecretsArgs(
        base=base, ctx=data.ctx, oidc_provider_arn=compute.oidc_provider_arn,
        oidc_issuer_url=compute.oidc_issuer_url, namespace=cfg.namespace,
        db_secret_arn=compute.database.master_secret_arn,
        db_secret_key_arn=data.keys.data.arn))
    # before Label Studio: its pods read the first user and token from this Secret at start
    admin = AdminCredentials("admin", AdminCredentialsArgs(base=base, namespace=cfg.namespace))
    prod = cfg.profile == "prod"
    controller = LoadBalancerController("k8s-lb-controller", LoadBalancerControllerArgs(
        base=base, ctx=data.ctx, cluster_name=cluster.name, vpc_id=data.network.vpc_id,
        oidc_provider_arn=compute.oidc_provider_arn, oidc_issuer_url=compute.oidc_issuer_url,
        certificate_arn=cfg.certificate_arn, replicas=2 if cfg.profile in ("staging", "prod")
        else 1))
    layout = plan_subnets(cfg.vpc_cidr, cfg.az_count)
    public = cfg.ingress_mode == "public"
    ranges = NetworkRanges(load_balancer_cidrs=layout.public if public else layout.app,
                           database_cidrs=layout.data, endpoint_cidrs=layout.app, s3_cidrs=())
    s3_cidrs = data.ctx.region.apply(lambda r: aws.ec2.get_prefix_list_output(
        name=f"com.amazonaws.{r}.s3").cidr_blocks)
    registry, _, repository = cfg.label_studio_image.partition("/")
    label_studio = LabelStudio("label-studio", LabelStudioArgs(
        base=base, profile=cfg.profile, namespace=cfg.namespace,
        origin=cfg.label_studio_origin, db_host=compute.database.address, db_name=DB_NAME,
        db_user=MASTER_USER, region=data.ctx.region,
        bucket=data.storage.annotations.bucket, folder=cfg.annotations_prefix,
        role_arn=identity.label_studio.arn, image_registry=registry,
        image_repository=repository, image_tag=cfg.label_studio_image_tag,
        ml_backend_cidrs=service_cidr(cluster, cfg.vpc_cidr), ranges=ranges, s3_cidrs=s3_cidrs,
        scheme="internet-facing" if public else "internal",
        certificate_arn=cfg.certificate_arn, access_log_bucket=data.storage.access_logs.bucket,
        deletion_protection=prod,
        lb_subnet_ids=data.network.public_subnet_ids if public
        else data.network.app_subnet_ids,
        wait_for=[*secrets.secrets, admin.secret], ingress_wait_for=[controller.chart, *nodes]))
    return KubernetesLayer(base, secrets, admin, controller, label_studio)


def layer_outputs(layer: KubernetesLayer) -> dict[str, Any]:
    """Stack outputs of the Kubernetes layer."""
    return {"labelStudioUrl": layer.label_studio.url,
            "kubernetesNamespace": layer.base.namespace_name}

