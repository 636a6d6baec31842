"""NetworkPolicies of the ``labelstack`` namespace, as plain manifests (dicts).

Default deny in both directions for every pod of the namespace, then explicit allows:

* every pod: DNS to CoreDNS in ``kube-system`` (UDP/TCP 53);
* Label Studio: ingress on its container port from the load balancer's subnets only; egress
  to PostgreSQL (data subnets, 5432), to the VPC's interface endpoints (STS for IRSA,
  443) and to S3 (the region's S3 prefix-list ranges behind the gateway endpoint, 443), and
  to the SAM2 backend pods on 9090;
* SAM2 backend: ingress on 9090 from Label Studio pods only.

No rule allows ``0.0.0.0/0`` or an empty peer list. The manifests are the same objects the
program declares and the graph test (:mod:`infra.k8s.netpol_graph`) evaluates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.k8s.label_studio_values import CONTAINER_PORT

#: Pod labels of Label Studio's app pods (the chart's selector labels for our release).
LABEL_STUDIO_POD_LABELS = {"app.kubernetes.io/name": "ls-app",
                           "app.kubernetes.io/instance": "label-studio"}
#: Pod labels the SAM2 backend's pods carry, and its port.
SAM2_POD_LABELS = {"app.kubernetes.io/name": "sam2-backend"}
SAM2_PORT = 9090
#: CoreDNS pods.
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
POSTGRES_PORT = 5432
HTTPS_PORT = 443


@dataclass(frozen=True)
class NetworkRanges:
    """Where things outside the cluster's pods live (plain CIDR strings)."""

    #: Subnets the load balancer's nodes sit in (internal: app subnets; public: public ones).
    load_balancer_cidrs: Sequence[str]
    #: The database subnets.
    database_cidrs: Sequence[str]
    #: Subnets of the interface VPC endpoints (STS, KMS, Secrets Manager...).
    endpoint_cidrs: Sequence[str]
    #: The region's S3 ranges (the gateway endpoint's prefix list).
    s3_cidrs: Sequence[str]


def _policy(name: str, namespace: str, pod_labels: dict[str, str] | None,
            types: list[str], ingress: list[dict] | None = None,
            egress: list[dict] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pod_labels)} if pod_labels
                            else {}, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "labelstack"}},
            "spec": spec}


def _cidrs(cidrs: Sequence[str]) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": c}} for c in cidrs]


def _tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


def base_policies(namespace: str) -> list[dict[str, Any]]:
    """Default deny (ingress and egress) for the namespace, and DNS for every pod."""
    dns_peer = {"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": DNS_NAMESPACE}},
                "podSelector": {"matchLabels": dict(DNS_POD_LABELS)}}
    return [
        _policy("default-deny-all", namespace, None, ["Ingress", "Egress"], [], []),
        _policy("allow-dns", namespace, None, ["Egress"], egress=[
            {"to": [dns_peer], "ports": [{"protocol": "UDP", "port": 53},
                                         {"protocol": "TCP", "port": 53}]}]),
    ]


def label_studio_policies(namespace: str, ranges: NetworkRanges) -> list[dict[str, Any]]:
    """Label Studio's allows, and the SAM2 backend's ingress from Label Studio."""
    ls = LABEL_STUDIO_POD_LABELS
    return [
        _policy("label-studio-from-load-balancer", namespace, ls, ["Ingress"], ingress=[
            {"from": _cidrs(ranges.load_balancer_cidrs), "ports": _tcp(CONTAINER_PORT)}]),
        _policy("label-studio-egress", namespace, ls, ["Egress"], egress=[
            {"to": _cidrs(ranges.database_cidrs), "ports": _tcp(POSTGRES_PORT)},
            {"to": _cidrs([*ranges.endpoint_cidrs, *ranges.s3_cidrs]),
             "ports": _tcp(HTTPS_PORT)},
            {"to": [{"podSelector": {"matchLabels": dict(SAM2_POD_LABELS)}}],
             "ports": _tcp(SAM2_PORT)}]),
        _policy("sam2-from-label-studio", namespace, SAM2_POD_LABELS, ["Ingress"], ingress=[
            {"from": [{"podSelector": {"matchLabels": dict(ls)}}], "ports": _tcp(SAM2_PORT)}]),
    ]
