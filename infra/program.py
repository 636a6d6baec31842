"""Wires the components together. The only place that knows the order of the layers.

Data plane (issue 2): keys -> network -> storage -> audit; compute plane (issue 3):
cluster -> database, registry; then workload identity, which needs the cluster's OIDC
issuer and the data plane's buckets and keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra import config, tagging
from infra.iam_documents import AwsContext
from infra.keys import Keys, KeysArgs
from infra.network import Network, NetworkArgs


# ---- data plane (issue 2) -------------------------------------------------------------------
@dataclass
class DataPlane:
    """What the data plane hands to the layers above it."""

    ctx: AwsContext
    keys: Keys
    network: Network


def data_plane(cfg: config.StackConfig) -> DataPlane:
    """Keys -> network -> storage -> audit."""
    ctx = AwsContext.lookup()
    keys = Keys("keys", KeysArgs(ctx=ctx, protect=cfg.posture.protect_data))
    network = Network("network", NetworkArgs(
        ctx=ctx, cidr=cfg.vpc_cidr, az_count=cfg.az_count, egress_mode=cfg.egress_mode,
        ingress_mode=cfg.ingress_mode, logs_key_arn=keys.logs.arn,
        log_retention_days=cfg.log_retention_days))
    return DataPlane(ctx, keys, network)


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
    }
# ---- end data plane -------------------------------------------------------------------------


def build() -> dict[str, Any]:
    """Declare every resource of the stack; return the stack outputs."""
    cfg = config.load()
    tagging.register(cfg)
    outputs: dict[str, Any] = {"profile": cfg.profile}
    data = data_plane(cfg)
    outputs.update(data_plane_outputs(data))
    return outputs
