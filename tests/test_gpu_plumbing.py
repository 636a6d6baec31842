"""GPU plumbing: the NVIDIA device plugin and the Cluster Autoscaler, rendered from the
upstream charts in ../shared/charts with the program's values; scale-from-zero tags on the
GPU node group; the autoscaler's IRSA policy."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from infra.charts import CLUSTER_AUTOSCALER, NVIDIA_DEVICE_PLUGIN, render, upstream_chart_dir
from infra.k8s import gpu
from infra.nodes import GPU_TAINT, NODE_TEMPLATE, POOL_LABEL, gpus_per_node, pools_for
from policies.manifests import evaluate_manifests
from tests.compute_helpers import INLINE_POLICY, ROLE, node_groups, trust
from tests.plans import stack_plan  # noqa: F401  (fixture)

K8S_VERSION = "1.34.0"
CLUSTER = "labelstack-dev"
ROLE_ARN = "arn:aws:iam::123456789012:role/gpu-autoscaler"


def _daemonsets(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "DaemonSet"}


@pytest.fixture(scope="module")
def device_plugin() -> list[dict[str, Any]]:
    objs = render(upstream_chart_dir(NVIDIA_DEVICE_PLUGIN), gpu.device_plugin_values(),
                  name=gpu.DEVICE_PLUGIN_RELEASE, namespace=gpu.SYSTEM_NAMESPACE)
    return [gpu.with_exemptions(o, gpu.DEVICE_PLUGIN_EXEMPTIONS) for o in objs]


@pytest.fixture(scope="module")
def autoscaler() -> list[dict[str, Any]]:
    objs = render(upstream_chart_dir(CLUSTER_AUTOSCALER),
                  gpu.autoscaler_values(CLUSTER, "us-east-1", ROLE_ARN),
                  name=gpu.AUTOSCALER_RELEASE, namespace=gpu.SYSTEM_NAMESPACE)
    return [gpu.with_exemptions(o, gpu.AUTOSCALER_EXEMPTIONS) for o in objs]


def _matches(pod_spec: dict[str, Any], labels: dict[str, str], taints: list[dict]) -> bool:
    """Could this pod land on a node with these labels and taints (nodeSelector, required
    node affinity, NoSchedule taints)?"""
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    terms = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms")
    if terms and not any(all(labels.get(e["key"]) in e["values"] for e in t["matchExpressions"])
                         for t in terms):
        return False
    tolerated = pod_spec.get("tolerations") or []
    for taint in taints:
        if not any(t.get("key") == taint["key"] and t.get("effect", taint["effect"]) ==
                   taint["effect"] and (t.get("operator") == "Exists" or
                                        t.get("value") == taint["value"]) for t in tolerated):
            return False
    return True


def _nodes() -> dict[str, tuple[dict[str, str], list[dict[str, str]]]]:
    """The pools' node labels and taints, in Kubernetes form."""
    effects = {"NO_SCHEDULE": "NoSchedule"}
    return {p.name: (dict(p.labels), [{**t, "effect": effects[t["effect"]]} for t in p.taints])
            for p in pools_for(["m6i.large"], ["g5.xlarge"], 1, 0, 2)}


def test_device_plugin_lands_on_gpu_nodes_only(device_plugin) -> None:
    plugin = _daemonsets(device_plugin)["nvidia-device-plugin"]["spec"]["template"]["spec"]
    nodes = _nodes()
    assert _matches(plugin, *nodes["gpu"])
    assert not _matches(plugin, *nodes["system"])
    # the chart's default affinity needs Node Feature Discovery labels EKS nodes lack
    exprs = [e for t in plugin["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        for e in t["matchExpressions"]]
    assert [e["key"] for e in exprs] == [POOL_LABEL]


def test_mps_daemon_is_rendered_but_never_scheduled(device_plugin) -> None:
    mps = _daemonsets(device_plugin)["nvidia-device-plugin-mps-control-daemon"]
    spec = mps["spec"]["template"]["spec"]
    assert spec["nodeSelector"].get("nvidia.com/mps.capable") == "true"
    for labels, taints in _nodes().values():
        assert not _matches(spec, labels, taints)


def test_device_plugin_passes_the_pack_with_documented_exemptions_only(device_plugin) -> None:
    found = evaluate_manifests(device_plugin)
    assert [v for v in found if v.mandatory] == []
    listed = {(v.resource.split("/")[1], rule) for v in found
              if v.rule == "k8s-policy-exemptions"
              for rule in v.message.split(":")[0].removeprefix("exempt from ").split(", ")}
    table = {(ds, rule) for ds, rules in gpu.DEVICE_PLUGIN_EXEMPTIONS.items() for rule in rules}
    assert listed == table


def test_every_exemption_is_still_needed(device_plugin) -> None:
    """Without the annotations, each exempted rule fires on its DaemonSet: no stale waiver."""
    raw = render(upstream_chart_dir(NVIDIA_DEVICE_PLUGIN), gpu.device_plugin_values(),
                 name=gpu.DEVICE_PLUGIN_RELEASE, namespace=gpu.SYSTEM_NAMESPACE)
    fired = {(v.resource.split("/")[1], v.rule) for v in evaluate_manifests(raw) if v.mandatory}
    table = {(ds, rule) for ds, rules in gpu.DEVICE_PLUGIN_EXEMPTIONS.items() for rule in rules}
    assert fired == table


def test_images_come_from_the_configured_mirrors() -> None:
    mirror = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror"
    plugin = render(upstream_chart_dir(NVIDIA_DEVICE_PLUGIN),
                    gpu.device_plugin_values(f"{mirror}/k8s-device-plugin"),
                    name=gpu.DEVICE_PLUGIN_RELEASE, namespace=gpu.SYSTEM_NAMESPACE)
    scaler = render(upstream_chart_dir(CLUSTER_AUTOSCALER), gpu.autoscaler_values(
        CLUSTER, "us-east-1", ROLE_ARN, f"{mirror}/cluster-autoscaler"),
        name=gpu.AUTOSCALER_RELEASE, namespace=gpu.SYSTEM_NAMESPACE)
    images = {c["image"] for o in plugin + scaler if o["kind"] in ("DaemonSet", "Deployment")
              for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {f"{mirror}/k8s-device-plugin:v0.20.0",
                      f"{mirror}/cluster-autoscaler:{gpu.AUTOSCALER_IMAGE_TAG}"}


def test_device_plugin_container_keeps_the_rest_hardened(device_plugin) -> None:
    ctr = _daemonsets(device_plugin)["nvidia-device-plugin"]["spec"]["template"]["spec"][
        "containers"][0]
    sc = ctr["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and "privileged" not in sc
    assert ctr["image"].endswith(":v0.20.0")
    assert ctr["resources"]["limits"]["memory"]


def test_autoscaler_args_and_identity(autoscaler) -> None:
    dep = next(o for o in autoscaler if o["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    cmd = spec["containers"][0]["command"]
    assert "--aws-use-static-instance-list=true" in cmd
    assert "--cloud-provider=aws" in cmd
    assert (f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            f"k8s.io/cluster-autoscaler/{CLUSTER}") in cmd
    assert spec["containers"][0]["image"].endswith(":" + gpu.AUTOSCALER_IMAGE_TAG)
    sa = next(o for o in autoscaler if o["kind"] == "ServiceAccount")
    assert sa["metadata"]["name"] == spec["serviceAccountName"] == gpu.AUTOSCALER_SERVICE_ACCOUNT
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_ARN
    nodes = _nodes()
    assert _matches(spec, *nodes["system"]) and not _matches(spec, *nodes["gpu"])


def test_autoscaler_passes_the_pack_with_documented_exemptions_only(autoscaler) -> None:
    found = evaluate_manifests(autoscaler)
    assert [v for v in found if v.mandatory] == []
    assert {v.message for v in found} == {
        f"exempt from {r}: {why}" for r, why in gpu.AUTOSCALER_EXEMPTIONS[
            "cluster-autoscaler"].items()}


def test_rendered_objects_are_valid_kubernetes(device_plugin, autoscaler) -> None:
    assert device_plugin and autoscaler  # something rendered
    for obj in device_plugin + autoscaler:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# ---- scale from zero -------------------------------------------------------------------------
def test_gpu_pool_template_tags_name_taint_labels_and_gpus() -> None:
    gpu_pool = next(p for p in pools_for(["m6i.large"], ["g5.xlarge"], 1, 0, 2)
                    if p.name == "gpu")
    tags = gpu_pool.autoscaler_template_tags()
    assert tags == {
        f"{NODE_TEMPLATE}/label/{POOL_LABEL}": "gpu",
        f"{NODE_TEMPLATE}/label/labelstack.io/accelerator": "nvidia",
        f"{NODE_TEMPLATE}/taint/{GPU_TAINT['key']}": f"{GPU_TAINT['value']}:NoSchedule",
        f"{NODE_TEMPLATE}/resources/nvidia.com/gpu": "1",
    }
    four = next(p for p in pools_for(["m6i.large"], ["g5.12xlarge"], 1, 0, 2) if p.name == "gpu")
    assert four.autoscaler_template_tags()[f"{NODE_TEMPLATE}/resources/nvidia.com/gpu"] == "4"


@pytest.mark.parametrize("types, fragment", [
    (["x9.huge"], "x9.huge not in the GPU table"),
    (["g5.xlarge", "g5.12xlarge"], "differ in GPU count"),
])
def test_gpu_types_the_template_cannot_describe_are_refused(types, fragment) -> None:
    with pytest.raises(ValueError, match="labelstack:gpuInstanceTypes") as err:
        gpus_per_node(types)
    assert fragment in str(err.value)


def test_plan_tags_the_gpu_groups_autoscaling_group(stack_plan) -> None:  # noqa: F811
    plan = stack_plan("dev")
    group = node_groups(plan)["gpu"]
    asg = f"eks-{group.inputs.get('nodeGroupName') or group.name + '-0123abcd'}-asg"
    tags = {t.inputs["tag"]["key"]: t.inputs["tag"] for t in plan.of_type(
        "aws:autoscaling/tag:Tag") if t.inputs["autoscalingGroupName"] == asg}
    # what the autoscaler will assume a new node looks like = what the group declares
    labels = {k.split("/label/", 1)[1]: v["value"] for k, v in tags.items() if "/label/" in k}
    assert labels == group.inputs["labels"]
    taints = {k.split("/taint/", 1)[1]: v["value"] for k, v in tags.items() if "/taint/" in k}
    assert taints == {t["key"]: f"{t['value']}:NoSchedule" for t in group.inputs["taints"]}
    assert group.inputs["taints"][0]["effect"] == "NO_SCHEDULE"
    assert tags[f"{NODE_TEMPLATE}/resources/nvidia.com/gpu"]["value"] == "1"
    assert all(t["propagateAtLaunch"] is False for t in tags.values())
    # the system group has no taint and no GPU: no template tags needed
    system = node_groups(plan)["system"]
    assert not [t for t in plan.of_type("aws:autoscaling/tag:Tag")
                if system.name in t.inputs["autoscalingGroupName"]]


def _autoscaler_role(plan):
    roles = [r for r in plan.of_type(ROLE) if "kube-system/cluster-autoscaler" in
             json.dumps(r.inputs.get("tags") or {})]
    assert len(roles) == 1, "no cluster-autoscaler IRSA role in the plan"
    return roles[0]


def test_autoscaler_role_trusts_its_service_account_and_resizes_own_groups_only(
        stack_plan) -> None:  # noqa: F811
    plan = stack_plan("dev")
    role = _autoscaler_role(plan)
    cond = json.dumps(trust(role))
    assert "system:serviceaccount:kube-system:cluster-autoscaler" in cond
    doc = next(json.loads(p.inputs["policy"]) for p in plan.of_type(INLINE_POLICY)
               if p.inputs["role"] == f"{role.name}-id")
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    resize = by_sid["ResizeThisClustersGroupsOnly"]
    cluster = plan.outputs["clusterName"]
    assert resize["Condition"] == {"StringEquals": {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned"}}
    names = [g.inputs.get("nodeGroupName") or f"{g.name}-0123abcd"
             for g in node_groups(plan).values()]
    assert sorted(resize["Resource"]) == sorted(
        f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/"
        f"eks-{n}-*" for n in names)
    describe = by_sid["DescribeThisClustersNodeGroups"]
    assert describe["Action"] == "eks:DescribeNodegroup"
    assert describe["Resource"] == f"arn:aws:eks:us-east-1:123456789012:nodegroup/{cluster}/*/*"
    # only descriptions run on '*'
    for s in doc["Statement"]:
        if s["Resource"] == "*" and "Condition" not in s:
            assert all(":Describe" in a or ":Get" in a for a in s["Action"]), s
