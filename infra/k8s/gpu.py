"""GPU plumbing: the NVIDIA device plugin on the GPU nodes and the Cluster Autoscaler that
scales the tainted GPU node group up from zero.

Device plugin: the official chart (``nvidia-device-plugin`` 0.20.0) on the ``AL2023_x86_64_NVIDIA``
nodes the compute plane already launches (drivers and container toolkit are in that AMI, the
Kubernetes device plugin is not). Chosen over a Bottlerocket NVIDIA AMI (plugin built in)
because the node groups, launch templates (IMDSv2, encrypted root on ``/dev/xvda``) and the
pack's node rules are written for AL2023, and the chart pins the plugin's version explicitly
in this repository instead of inside an AMI release. The chart's default affinity needs Node
Feature Discovery labels that EKS nodes do not carry; we replace it with our pool label, so
the plugin lands on the GPU node group and nowhere else.

Cluster Autoscaler: the official chart (``cluster-autoscaler`` 9.59.0) with auto-discovery of
the cluster's managed node groups, ``--aws-use-static-instance-list=true`` (the VPC has no
internet: the pricing API is unreachable) and an IRSA role that may change only Auto Scaling
groups tagged as this cluster's. Scale-from-zero needs the ``node-template`` tags on the GPU
group's Auto Scaling group (:mod:`infra.nodes`).

The value builders are plain functions of plain values: the program and the tests render the
same charts with the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from infra import iam_documents as iam
from infra.charts import CLUSTER_AUTOSCALER, NVIDIA_DEVICE_PLUGIN, ChartPin
from infra.identity import irsa_role
from infra.nodes import GPU_TAINT, POOL_LABEL

#: Namespace of both add-ons (system-critical priority classes live there).
SYSTEM_NAMESPACE = "kube-system"
DEVICE_PLUGIN_RELEASE = "nvidia-device-plugin"
AUTOSCALER_RELEASE = "cluster-autoscaler"
#: Service account the autoscaler's IRSA role trusts.
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
#: Cluster Autoscaler release matching the chart's appVersion (minor = Kubernetes minor).
AUTOSCALER_IMAGE_TAG = "v1.35.0"
#: Upstream image repositories (config ``clusterAutoscalerImage`` / ``devicePluginImage``
#: name a mirror instead: with egressMode=none the nodes reach no public registry).
AUTOSCALER_IMAGE = "registry.k8s.io/autoscaling/cluster-autoscaler"
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin"
#: Annotation prefix through which a workload carries a documented pack exemption:
#: ``exempt.policy.labelstack.io/<rule>: <reason>`` (see policies/rules/kubernetes.py).
EXEMPTION_PREFIX = "exempt.policy.labelstack.io/"

_HARDENED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]},
                       "seccompProfile": {"type": "RuntimeDefault"}}

#: What the device plugin must be allowed, per DaemonSet the chart renders, with the reason.
#: Everything else the pack asks for, it gets (drop ALL, read-only root, no escalation).
DEVICE_PLUGIN_EXEMPTIONS: dict[str, dict[str, str]] = {
    "nvidia-device-plugin": {
        "k8s-no-host-path": "the kubelet's device-plugin socket directory "
        "(/var/lib/kubelet/device-plugins), the CDI spec directory and the MPS directories are "
        "host paths by design: that is how a device plugin registers with the kubelet",
        "k8s-run-as-non-root": "it creates its socket in the root-owned kubelet directory",
        "k8s-liveness-probe": "no health endpoint; the kubelet notices a lost registration "
        "and the DaemonSet restarts the container",
        "k8s-readiness-probe": "serves no traffic; readiness is the kubelet registration",
    },
    # Rendered by the chart whenever the plugin is, but scheduled only on nodes labelled
    # nvidia.com/mps.capable=true, which the plugin sets only under an MPS sharing config.
    # This bundle configures none, so no pod of it ever runs (tests check the selector).
    "nvidia-device-plugin-mps-control-daemon": {
        rule: "never scheduled: selects nvidia.com/mps.capable=true, set only with an MPS "
        "sharing config, which this bundle does not use"
        for rule in ("k8s-no-host-path", "k8s-run-as-non-root", "k8s-no-privileged",
                     "k8s-no-host-namespaces", "k8s-no-privilege-escalation",
                     "k8s-drop-all-capabilities", "k8s-seccomp-runtime-default",
                     "k8s-read-only-root-fs", "k8s-liveness-probe", "k8s-readiness-probe")
    },
}


#: The autoscaler chart has no readiness probe value; it serves no traffic but metrics.
AUTOSCALER_EXEMPTIONS: dict[str, dict[str, str]] = {
    "cluster-autoscaler": {
        "k8s-readiness-probe": "the chart offers no readiness probe; the autoscaler serves no "
        "traffic (metrics only) and has a liveness probe on /health-check",
    },
}


def gpu_node_affinity(pool: str = "gpu") -> dict[str, Any]:
    """Required node affinity on the GPU pool label."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": POOL_LABEL, "operator": "In", "values": [pool]}]}]}}}


def gpu_tolerations() -> list[dict[str, str]]:
    """Toleration of exactly the GPU node group's taint."""
    return [{"key": GPU_TAINT["key"], "operator": "Equal", "value": GPU_TAINT["value"],
             "effect": "NoSchedule"}]


def device_plugin_values(image: str = DEVICE_PLUGIN_IMAGE) -> dict[str, Any]:
    """Values of the device-plugin chart: GPU nodes only, hardened container, bounded;
    ``image``: the repository (a mirror when the VPC has no internet)."""
    return {
        "image": {"repository": image},
        # replaces the chart's NFD-label affinity (lists are replaced, not merged)
        "affinity": gpu_node_affinity(),
        "nodeSelector": {POOL_LABEL: "gpu"},
        "tolerations": gpu_tolerations(),
        "securityContext": dict(_HARDENED_CONTAINER),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                      "limits": {"cpu": "200m", "memory": "128Mi"}},
        "failOnInitError": True,
        "gfd": {"enabled": False},
    }


def autoscaler_values(cluster_name: str, region: str, role_arn: str,
                      image: str = AUTOSCALER_IMAGE) -> dict[str, Any]:
    """Values of the Cluster Autoscaler chart for this cluster (plain strings)."""
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "fullnameOverride": AUTOSCALER_RELEASE,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"repository": image, "tag": AUTOSCALER_IMAGE_TAG},
        "extraArgs": {
            "logtostderr": True, "stderrthreshold": "info", "v": 2,
            # no internet in the VPC: use the instance list compiled into the release
            "aws-use-static-instance-list": True,
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            "skip-nodes-with-local-storage": False,
            "scale-down-unneeded-time": "10m",
        },
        "rbac": {"serviceAccount": {
            "name": AUTOSCALER_SERVICE_ACCOUNT,
            # the chart renders annotation values unquoted: a "true" would become a boolean
            # the API server refuses, so the regional STS endpoint is chosen through env
            "annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
        "extraEnv": {"AWS_STS_REGIONAL_ENDPOINTS": "regional"},
        "nodeSelector": {POOL_LABEL: "system"},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": dict(_HARDENED_CONTAINER),
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"},
                      "limits": {"cpu": "500m", "memory": "600Mi"}},
        "service": {"create": True},
    }


def with_exemptions(obj: dict[str, Any], table: Mapping[str, Mapping[str, str]]
                    ) -> dict[str, Any]:
    """``obj`` with the documented pack exemptions of its name (from ``table``) as
    ``exempt.policy.labelstack.io/<rule>`` annotations; other objects are unchanged."""
    name = (obj.get("metadata") or {}).get("name")
    rules = table.get(name) if obj.get("kind") in ("DaemonSet", "Deployment") else None
    if not rules:
        return obj
    meta = dict(obj["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           **{EXEMPTION_PREFIX + rule: why for rule, why in rules.items()}}
    return {**obj, "metadata": meta}


def autoscaler_policy(ctx: iam.AwsContext, cluster_name: pulumi.Input[str],
                      node_group_names: Sequence[pulumi.Input[str]]) -> dict[str, Any]:
    """What the autoscaler may do: read Auto Scaling / EC2 descriptions (those actions take no
    resource ARNs); resize and terminate only the Auto Scaling groups of this cluster's managed
    node groups (EKS names them ``eks-<node group>-<uuid>``) that are tagged as this
    cluster's; describe only this cluster's node groups (labels, taints for scale-from-zero)."""
    cluster = pulumi.Output.from_input(cluster_name)
    condition = cluster.apply(lambda c: {"StringEquals": {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{c}": "owned"}})
    groups = [pulumi.Output.from_input(n).apply(
        lambda n: ctx.arn("autoscaling", f"autoScalingGroup:*:autoScalingGroupName/eks-{n}-*"))
        for n in node_group_names]
    return iam.document(
        {"Sid": "DescribeScalingInputs", "Effect": "Allow",
         "Action": ["autoscaling:DescribeAutoScalingGroups",
                    "autoscaling:DescribeAutoScalingInstances",
                    "autoscaling:DescribeLaunchConfigurations",
                    "autoscaling:DescribeScalingActivities",
                    "autoscaling:DescribeTags",
                    "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:GetInstanceTypesFromInstanceRequirements"],
         "Resource": "*"},
        {"Sid": "ResizeThisClustersGroupsOnly", "Effect": "Allow",
         "Action": ["autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup"],
         "Resource": groups, "Condition": condition},
        {"Sid": "DescribeThisClustersNodeGroups", "Effect": "Allow",
         "Action": "eks:DescribeNodegroup",
         "Resource": cluster.apply(lambda c: ctx.arn("eks", f"nodegroup/{c}/*/*"))},
    )


@dataclass
class GpuPlumbingArgs:
    """Inputs of :class:`GpuPlumbing`."""

    #: Kubernetes provider of the cluster (from the cluster base component).
    provider: pulumi.ProviderResource
    cluster_name: pulumi.Input[str]
    region: pulumi.Input[str]
    ctx: iam.AwsContext
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    #: Names of the cluster's managed node groups.
    node_group_names: Sequence[pulumi.Input[str]]
    #: Install the NVIDIA device plugin (off for stacks that run SAM2 on CPU).
    device_plugin: bool = True
    #: Image repositories (mirrors when the VPC has no internet).
    autoscaler_image: str = AUTOSCALER_IMAGE
    device_plugin_image: str = DEVICE_PLUGIN_IMAGE
    #: Chart pins (overridable for tests of a version bump).
    device_plugin_chart: ChartPin = NVIDIA_DEVICE_PLUGIN
    autoscaler_chart: ChartPin = CLUSTER_AUTOSCALER


class GpuPlumbing(pulumi.ComponentResource):
    """NVIDIA device plugin (GPU nodes only) + Cluster Autoscaler with its IRSA role."""

    def __init__(self, name: str, args: GpuPlumbingArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:k8s:GpuPlumbing", name, None, opts)
        import pulumi_kubernetes as k8s

        self.autoscaler_role, policy = irsa_role(
            f"{name}-autoscaler", parent=self, namespace=SYSTEM_NAMESPACE,
            service_account=AUTOSCALER_SERVICE_ACCOUNT,
            oidc_provider_arn=args.oidc_provider_arn, oidc_issuer_url=args.oidc_issuer_url,
            policy=autoscaler_policy(args.ctx, args.cluster_name, args.node_group_names))

        on_cluster = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.charts: list[pulumi.Resource] = []
        if args.device_plugin:
            self.charts.append(self._device_plugin(name, args, on_cluster))
        values = pulumi.Output.all(args.cluster_name, args.region,
                                   self.autoscaler_role.arn).apply(
            lambda a: autoscaler_values(a[0], a[1], a[2], args.autoscaler_image))
        self.autoscaler = k8s.helm.v4.Chart(
            f"{name}-autoscaler", chart=args.autoscaler_chart.chart,
            version=args.autoscaler_chart.version,
            repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=args.autoscaler_chart.repo),
            namespace=SYSTEM_NAMESPACE, name=AUTOSCALER_RELEASE, values=values,
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(
                depends_on=[policy], transforms=[_exemption_transform(AUTOSCALER_EXEMPTIONS)])))
        self.charts.append(self.autoscaler)
        self.register_outputs({"autoscaler_role_arn": self.autoscaler_role.arn})

    def _device_plugin(self, name: str, args: GpuPlumbingArgs,
                       on_cluster: pulumi.ResourceOptions) -> pulumi.Resource:
        import pulumi_kubernetes as k8s

        pin = args.device_plugin_chart
        return k8s.helm.v4.Chart(
            f"{name}-device-plugin", chart=pin.chart, version=pin.version,
            repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=pin.repo),
            namespace=SYSTEM_NAMESPACE, name=DEVICE_PLUGIN_RELEASE,
            values=device_plugin_values(args.device_plugin_image),
            opts=pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(
                transforms=[_exemption_transform(DEVICE_PLUGIN_EXEMPTIONS)])))


def _exemption_transform(table: Mapping[str, Mapping[str, str]]):
    """A Pulumi resource transform adding :func:`with_exemptions` annotations to the
    objects a chart declares (the pack sees them at preview)."""
    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if not args.type_.startswith("kubernetes:apps/v1:"):
            return None
        props = dict(args.props)
        kind = args.type_.rsplit(":", 1)[1]
        annotated = with_exemptions({**props, "kind": kind}, table)
        if annotated is props or annotated.get("metadata") == props.get("metadata"):
            return None
        props["metadata"] = annotated["metadata"]
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)
    return transform
