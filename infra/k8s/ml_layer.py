"""The ML layer, on top of the Kubernetes layer: GPU plumbing (device plugin, autoscaler),
the SAM2 backend and the bootstrap Job (both use the Kubernetes layer's admin credentials,
the Secret Label Studio creates its first user from).

The backend and the Job need images in the stack's ECR repositories, which exist only after
a first ``pulumi up``: until ``labelstack:sam2ImageDigest`` / ``bootstrapImageDigest`` are
set (``make images`` prints them), they are left out and the ``nextStep`` output says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi_aws as aws

from infra import config
from infra.k8s.bootstrap_job import BootstrapJob, BootstrapJobArgs, admin_credentials_hint
from infra.k8s.gpu import GpuPlumbing, GpuPlumbingArgs
from infra.k8s.label_studio_values import CONTAINER_PORT as LABEL_STUDIO_PORT
from infra.k8s.netpol import LABEL_STUDIO_POD_LABELS
from infra.k8s.sam2 import Sam2Backend, Sam2BackendArgs, label_studio_service_url
from infra.network import plan_subnets

if TYPE_CHECKING:
    from infra.identity import WorkloadIdentity
    from infra.k8s.layer import KubernetesLayer
    from infra.program import ComputePlane, DataPlane


def ml_layer(cfg: config.StackConfig, data: DataPlane, compute: ComputePlane,
             identity: WorkloadIdentity, k8s_layer: KubernetesLayer) -> dict[str, Any]:
    """Declare the layer; return its stack outputs."""
    base, ns = k8s_layer.base, cfg.namespace
    groups = compute.nodes.groups
    gpu = GpuPlumbing("gpu", GpuPlumbingArgs(
        provider=base.provider, cluster_name=compute.cluster.name, region=data.ctx.region,
        ctx=data.ctx, oidc_provider_arn=compute.oidc_provider_arn,
        oidc_issuer_url=compute.oidc_issuer_url,
        node_group_names=[g.node_group_name for g in groups.values()],
        device_plugin=cfg.gpu_enabled, autoscaler_image=cfg.cluster_autoscaler_image,
        device_plugin_image=cfg.device_plugin_image))
    admin = k8s_layer.admin
    outputs: dict[str, Any] = {"adminLogin": admin_credentials_hint(ns),
                               "autoscalerRoleArn": gpu.autoscaler_role.arn}
    if not cfg.sam2_image_digest:
        outputs["nextStep"] = ("push the images (`make images STACK=<stack>`), set "
                               "labelstack:sam2ImageDigest and labelstack:bootstrapImageDigest, "
                               "then run `pulumi up` again")
        return outputs
    s3_cidrs = data.ctx.region.apply(lambda r: aws.ec2.get_prefix_list_output(
        name=f"com.amazonaws.{r}.s3").cidr_blocks)
    sam2 = Sam2Backend("sam2", Sam2BackendArgs(
        base=base, namespace=ns,
        image_repository=compute.registry.urls["sam2-backend"],
        image_digest=cfg.sam2_image_digest, role_arn=identity.sam2.arn,
        region=data.ctx.region, models_bucket=data.storage.models.bucket,
        weights_key=cfg.sam2_weights_key, weights_sha256=cfg.sam2_weights_sha256,
        model=cfg.sam2_model, gpu=cfg.gpu_enabled, s3_cidrs=s3_cidrs,
        endpoint_cidrs=plan_subnets(cfg.vpc_cidr, cfg.az_count).app,
        api_key_secret=admin.secret_name, api_key_key=admin.token_key,
        wait_for=[admin.secret, *gpu.charts]))
    outputs["sam2BackendUrl"] = sam2.url
    if cfg.bootstrap_image_digest:
        job = BootstrapJob("bootstrap", BootstrapJobArgs(
            base=base, namespace=ns, image_repository=compute.registry.urls["bootstrap"],
            image_digest=cfg.bootstrap_image_digest,
            label_studio_url=label_studio_service_url(ns),
            label_studio_labels=LABEL_STUDIO_POD_LABELS, label_studio_port=LABEL_STUDIO_PORT,
            sam2_url=sam2.url_plain, sam2_auth_secret=sam2.auth_secret_name,
            bucket_names={p: b.bucket for p, b in data.storage.buckets().items()},
            wait_for=[admin.secret, k8s_layer.label_studio.chart, sam2.chart]))
        outputs["bootstrapJobName"] = job.job_name
    else:
        outputs["nextStep"] = ("set labelstack:bootstrapImageDigest (`make images`), then run "
                               "`pulumi up` again to create the labeling projects")
    return outputs
