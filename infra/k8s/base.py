"""The Kubernetes foundation every workload of the stack stands on.

* A Kubernetes provider built from the cluster's outputs: endpoint, CA and a token from
  ``aws eks get-token`` (the deployer's own AWS identity, through an EKS access entry); no
  static credential anywhere.
* The workloads' namespace with Pod Security Admission ``restricted`` enforced (and audited
  and warned), pinned to the cluster's Kubernetes version.
* Default-deny NetworkPolicies (ingress and egress) plus DNS to CoreDNS
  (:func:`infra.k8s.netpol.base_policies`); workload allows come with each workload.

Other layers take :attr:`KubernetesBase.provider` and :attr:`KubernetesBase.namespace_name`
(and wait on :attr:`KubernetesBase.namespace`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s.netpol import base_policies

#: Pod Security Standard enforced on the namespace.
POD_SECURITY_LEVEL = "restricted"


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig (JSON) that authenticates with ``aws eks get-token``."""
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                     "args": ["eks", "get-token", "--cluster-name", cluster_name,
                              "--region", region, "--output", "json"],
                     "interactiveMode": "Never"}}
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": cluster_name,
        "clusters": [{"name": cluster_name, "cluster": {
            "server": endpoint, "certificate-authority-data": ca_data}}],
        "users": [{"name": cluster_name, "user": user}],
        "contexts": [{"name": cluster_name,
                      "context": {"cluster": cluster_name, "user": cluster_name}}]})


def namespace_labels(kubernetes_version: str) -> dict[str, str]:
    """Pod Security Admission labels: enforce, audit and warn ``restricted``."""
    version = f"v{kubernetes_version}"
    labels = {"app.kubernetes.io/part-of": "labelstack"}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = POD_SECURITY_LEVEL
        labels[f"pod-security.kubernetes.io/{mode}-version"] = version
    return labels


@dataclass
class KubernetesBaseArgs:
    """Inputs of :class:`KubernetesBase`."""

    cluster_name: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    #: Base64 certificate authority data of the cluster.
    ca_data: pulumi.Input[str]
    region: pulumi.Input[str]
    kubernetes_version: str
    namespace: str
    #: What must exist before anything is scheduled (node groups, CoreDNS...). Kubernetes
    #: objects are deleted before these go.
    wait_for: Sequence[pulumi.Resource] = ()


class KubernetesBase(pulumi.ComponentResource):
    """Provider, restricted namespace and its default-deny NetworkPolicies."""

    provider: k8s.Provider
    namespace: k8s.core.v1.Namespace
    namespace_name: pulumi.Output[str]

    def __init__(self, name: str, args: KubernetesBaseArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:k8s:KubernetesBase", name, None, opts)
        config = pulumi.Output.all(args.cluster_name, args.endpoint, args.ca_data,
                                   args.region).apply(lambda a: kubeconfig(*a))
        self.provider = k8s.Provider(
            f"{name}-provider", kubeconfig=config, enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for)))
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata={"name": args.namespace,
                                           "labels": namespace_labels(args.kubernetes_version)},
            opts=self.child_opts(depends_on=list(args.wait_for)))
        # the name, as an output that waits for the namespace
        self.namespace_name = pulumi.Output.all(self.namespace.id, args.namespace).apply(
            lambda a: a[1])
        self.policies = self.network_policies(f"{name}-netpol",
                                              base_policies(args.namespace))
        self.register_outputs({"namespace": self.namespace_name})

    def child_opts(self, *, depends_on: Sequence[pulumi.Resource] = (),
                   parent: pulumi.Resource | None = None) -> pulumi.ResourceOptions:
        """Options of a Kubernetes object of this stack: our provider, parented, after the
        namespace."""
        deps = [self.namespace, *depends_on] if hasattr(self, "namespace") else list(depends_on)
        return pulumi.ResourceOptions(parent=parent or self, provider=self.provider,
                                      depends_on=deps)

    @staticmethod
    def after(resources: Sequence[pulumi.Resource]) -> pulumi.Output[list[pulumi.Resource]]:
        """A ``depends_on`` value: ``resources`` plus every object each ``helm.v4.Chart``
        among them holds, so creation waits for those objects to be ready and deletion runs
        before any of them goes."""
        charts = [r for r in resources if isinstance(r, k8s.helm.v4.Chart)]
        return pulumi.Output.all(*[c.resources for c in charts]).apply(
            lambda lists: [*resources, *(r for objs in lists for r in (objs or []))])

    def network_policies(self, prefix: str, manifests: Sequence[dict[str, Any]],
                         parent: pulumi.Resource | None = None
                         ) -> list[k8s.networking.v1.NetworkPolicy]:
        """Declare NetworkPolicy manifests (from :mod:`infra.k8s.netpol`) as resources."""
        return [k8s.networking.v1.NetworkPolicy(
            f"{prefix}-{m['metadata']['name']}", metadata=m["metadata"], spec=m["spec"],
            opts=self.child_opts(parent=parent)) for m in manifests]
