"""Wires the components together. The only place that knows the order of the layers.

Data plane (issue 2): keys -> network -> storage -> audit; compute plane (issue 3):
cluster -> database, registry; then workload identity, which needs the cluster's OIDC
issuer and the data plane's buckets and keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from infra import config, tagging
from infra.addons import AddonsArgs, BaseAddons, WorkloadAddons
from infra.admin_access import AdminAccess, AdminAccessArgs
from infra.audit import Audit, AuditArgs, trail_arn
from infra.cluster import Cluster, ClusterArgs
from infra.database import Database, DatabaseArgs
from infra.iam_documents import AwsContext
from infra.identity import WorkloadIdentity, WorkloadIdentityArgs
from infra.keys import Keys, KeysArgs
from infra.network import Network, NetworkArgs
from infra.nodes import Nodes, NodesArgs, pools_for
from infra.registry import Registry, RegistryArgs
from infra.service_roles import ServiceLinkedRoles, ServiceLinkedRolesArgs
from infra.storage import Storage, StorageArgs


# ---- data plane (issue 2) -------------------------------------------------------------------
@dataclass
class DataPlane:
    """What the data plane hands to the layers above it."""

    ctx: AwsContext
    keys: Keys
    network: Network
    storage: Storage
    audit: Audit


def data_plane(cfg: config.StackConfig) -> DataPlane:
    """Keys -> network -> storage -> audit."""
    ctx = AwsContext.lookup()
    keys = Keys("keys", KeysArgs(ctx=ctx, protect=cfg.posture.protect_data))
    network = Network("network", NetworkArgs(
        ctx=ctx, cidr=cfg.vpc_cidr, az_count=cfg.az_count, egress_mode=cfg.egress_mode,
        ingress_mode=cfg.ingress_mode, logs_key_arn=keys.logs.arn,
        log_retention_days=cfg.log_retention_days, admin_access=cfg.admin_access))
    posture = cfg.posture
    from infra.k8s.ingress import ACCESS_LOG_PREFIX  # the Ingress's ALB writes there

    storage = Storage("storage", StorageArgs(
        ctx=ctx, projects=cfg.source_projects, data_key_arn=keys.data.arn,
        logs_key_arn=keys.logs.arn, s3_endpoint_id=network.s3_endpoint_id, profile=cfg.profile,
        protect=posture.protect_data, force_destroy=posture.force_destroy,
        break_glass_role_arn=cfg.break_glass_role_arn, image_access=cfg.image_access,
        annotator_cidrs=cfg.annotator_cidrs, label_studio_origin=cfg.label_studio_origin,
        trail_arn=trail_arn(ctx), alb_log_prefix=ACCESS_LOG_PREFIX))
    audit = Audit("audit", AuditArgs(
        ctx=ctx, bucket=storage.audit.bucket, bucket_policy=storage.policies["audit"],
        logs_key_arn=keys.logs.arn, log_retention_days=cfg.log_retention_days,
        data_event_bucket_arns=[*(b.arn for b in storage.sources.values()),
                                storage.annotations.arn]))
    return DataPlane(ctx, keys, network, storage, audit)


def workload_identity(cfg: config.StackConfig, data: DataPlane,
                      oidc_provider_arn: pulumi.Input[str],
                      oidc_issuer_url: pulumi.Input[str]) -> WorkloadIdentity:
    """IRSA roles for Label Studio and the SAM2 backend (issuer from the compute plane)."""
    st = data.storage
    return WorkloadIdentity("identity", WorkloadIdentityArgs(
        ctx=data.ctx, oidc_provider_arn=oidc_provider_arn, oidc_issuer_url=oidc_issuer_url,
        namespace=cfg.namespace, source_bucket_arns=[b.arn for b in st.sources.values()],
        source_prefixes=cfg.source_prefixes, annotations_bucket_arn=st.annotations.arn,
        annotations_prefix=cfg.annotations_prefix, models_bucket_arn=st.models.arn,
        data_key_arn=data.keys.data.arn))


def data_plane_outputs(data: DataPlane) -> dict[str, Any]:
    """Stack outputs of the data plane."""
    net = data.network
    return {
        "vpcId": net.vpc_id,
        "appSubnetIds": net.app_subnet_ids,
        "dataSubnetIds": net.data_subnet_ids,
        "publicSubnetIds": net.public_subnet_ids,
        "s3EndpointId": net.s3_endpoint_id,
        "dataKeyArn": data.keys.data.arn,
        "logsKeyArn": data.keys.logs.arn,
        "clusterKeyArn": data.keys.cluster.arn,
        "bucketNames": {p: b.bucket for p, b in data.storage.buckets().items()},
        "bucketArns": {p: b.arn for p, b in data.storage.buckets().items()},
        "trailArn": data.audit.trail.arn,
    }


def identity_outputs(identity: WorkloadIdentity) -> dict[str, Any]:
    """Stack outputs of workload identity."""
    return {"labelStudioRoleArn": identity.label_studio.arn,
            "sam2RoleArn": identity.sam2.arn}
# ---- end data plane -------------------------------------------------------------------------


# ---- compute plane (issue 3) ----------------------------------------------------------------
@dataclass
class ComputePlane:
    """What the compute plane hands to workload identity and the stack outputs."""

    cluster: Cluster
    nodes: Nodes
    database: Database
    registry: Registry
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    outputs: dict[str, Any]


def compute_plane(cfg: config.StackConfig, data: DataPlane) -> ComputePlane:
    """Cluster -> base add-ons -> nodes -> workload add-ons; database; registry."""
    posture, net, keys = cfg.posture, data.network, data.keys
    prefix = f"labelstack-{pulumi.get_stack()}"
    slr = ServiceLinkedRoles("service-roles", ServiceLinkedRolesArgs(
        mode=cfg.service_linked_roles))
    cluster = Cluster("cluster", ClusterArgs(
        cluster_name=prefix, version=cfg.eks_version, subnet_ids=net.app_subnet_ids,
        secrets_key_arn=keys.cluster.arn, logs_key_arn=keys.logs.arn,
        log_retention_days=cfg.log_retention_days, ctx=data.ctx,
        public_access_cidrs=cfg.cluster_public_access_cidrs,
        admin_role_arns=cfg.admin_role_arns, deletion_protection=posture.deletion_protection))
    addon_args = {"cluster_name": cluster.name, "version": cfg.eks_version, "ctx": data.ctx,
                  "oidc_provider_arn": cluster.oidc_provider_arn,
                  "oidc_issuer_url": cluster.oidc_issuer_url}
    base = BaseAddons("addons-base", AddonsArgs(**addon_args))
    nodes = Nodes("nodes", NodesArgs(
        cluster_name=cluster.name, version=cfg.eks_version, subnet_ids=net.app_subnet_ids,
        volume_key_arn=keys.data.arn, ctx=data.ctx,
        wait_for=[net, *base.addons.values(), *slr.wait_for("eks-nodegroup")],
        grant_after=slr.wait_for("autoscaling"),
        instance_tags=tagging.standard_tags(cfg),
        pools=pools_for(cfg.system_instance_types, cfg.gpu_instance_types,
                        posture.system_min_size, posture.gpu_min_size, cfg.gpu_max_size)))
    WorkloadAddons("addons-workload", AddonsArgs(
        **addon_args, volume_key_arn=keys.data.arn, wait_for=list(nodes.groups.values())))
    database = Database("database", DatabaseArgs(
        identifier=prefix, engine_version=cfg.db_engine_version,
        instance_class=cfg.db_instance_class, allocated_storage=cfg.db_allocated_storage,
        vpc_id=net.vpc_id, subnet_ids=net.data_subnet_ids,
        client_security_group_id=cluster.cluster_security_group_id,
        data_key_arn=keys.data.arn, logs_key_arn=keys.logs.arn,
        log_retention_days=cfg.log_retention_days, backup_days=posture.db_backup_days,
        ctx=data.ctx, multi_az=posture.multi_az_db,
        deletion_protection=posture.deletion_protection, protect=posture.protect_data,
        monitoring_interval=15 if cfg.profile == "prod" else 60, wait_for=slr.wait_for("rds")))
    registry = Registry("registry", RegistryArgs(prefix=prefix, key_arn=keys.data.arn,
                                                 force_delete=posture.force_destroy))
    outputs = {
        "clusterName": cluster.name,
        "clusterEndpoint": cluster.endpoint,
        "clusterSecurityGroupId": cluster.cluster_security_group_id,
        "oidcProviderArn": cluster.oidc_provider_arn,
        "dbEndpoint": database.endpoint,
        "dbSecretArn": database.master_secret_arn,
        "dbSecurityGroupId": database.security_group_id,
        "sam2BackendRepositoryUrl": registry.urls["sam2-backend"],
        "bootstrapRepositoryUrl": registry.urls["bootstrap"],
    }
    if cfg.admin_access == "ssm":
        admin = AdminAccess("admin", AdminAccessArgs(
            ctx=data.ctx, vpc_id=net.vpc_id, vpc_cidr=cfg.vpc_cidr,
            subnet_id=net.app_subnet_ids[0], volume_key_arn=keys.data.arn,
            cluster_security_group_id=cluster.cluster_security_group_id,
            wait_for=[net.endpoints[s] for s in ("ssm", "ssmmessages", "ec2messages")]))
        outputs["adminInstanceId"] = admin.instance.id
    outputs["serviceLinkedRolesCreated"] = sorted(slr.roles)
    return ComputePlane(cluster, nodes, database, registry, cluster.oidc_provider_arn,
                        cluster.oidc_issuer_url, cluster.cluster_security_group_id, outputs)
# ---- end compute plane ----------------------------------------------------------------------


def build() -> dict[str, Any]:
    """Declare every resource of the stack; return the stack outputs."""
    cfg = config.load()
    tagging.register(cfg)
    outputs: dict[str, Any] = {"profile": cfg.profile}
    data = data_plane(cfg)
    outputs.update(data_plane_outputs(data))
    compute = compute_plane(cfg, data)
    outputs.update(compute.outputs)
    identity = workload_identity(cfg, data, compute.oidc_provider_arn, compute.oidc_issuer_url)
    outputs.update(identity_outputs(identity))
    if not cfg.kubernetes_layer:  # first `up` of a new stack: the private API is not reachable
        outputs["nextStep"] = ("AWS layers only (kubernetesLayer=false): reach the private EKS "
                               "API (README: Reaching the private cluster), then `pulumi config "
                               "set labelstack:kubernetesLayer true` and `pulumi up` again")
        return outputs
    # Kubernetes layer: provider, namespace, External Secrets, load balancer controller,
    # Label Studio (infra/k8s/layer.py)
    from infra.k8s.layer import kubernetes_layer, layer_outputs
    from infra.k8s.ml_layer import ml_layer

    k8s_layer = kubernetes_layer(cfg, data, compute, identity)
    outputs.update(layer_outputs(k8s_layer))
    # ML layer: GPU plumbing, admin credentials, SAM2 backend, bootstrap Job
    # (infra/k8s/ml_layer.py)
    outputs.update(ml_layer(cfg, data, compute, identity, k8s_layer))
    return outputs
