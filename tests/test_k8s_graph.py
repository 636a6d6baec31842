"""The Kubernetes layer in the dependency graph: cluster -> add-ons -> controllers -> Label
Studio, and a teardown order that removes the controller-made load balancer before the
controller, the nodes, the cluster and the VPC (``pulumi destroy`` deletes dependents
first)."""

from __future__ import annotations

from infra.offline import HELM_CHART, Plan
from tests.compute_helpers import CLUSTER, NODE_GROUP, one
from tests.test_graph import closure, edges, find_cycle

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"


def key(plan: Plan, typ: str, name: str) -> str:
    found = [r.key for r in plan.resources if r.type == typ and r.name == name]
    assert len(found) == 1, (typ, name)
    return found[0]


def test_cluster_addons_controllers_then_label_studio(each_stack: Plan) -> None:
    graph = edges(each_stack)
    cluster = one(each_stack, CLUSTER).key
    groups = {r.key for r in each_stack.of_type(NODE_GROUP)}
    eso = key(each_stack, HELM_CHART, "k8s-secrets-operator")
    controller = key(each_stack, HELM_CHART, "k8s-lb-controller-chart")
    label_studio = key(each_stack, HELM_CHART, "label-studio")
    for chart in (eso, controller):
        assert {cluster, *groups} <= closure(graph, chart), chart
    # Label Studio waits for its Secrets (and so for External Secrets), its policies and
    # the restricted namespace
    ls_waits = closure(graph, label_studio)
    assert {eso, cluster, *groups} <= ls_waits
    assert key(each_stack, "kubernetes:core/v1:Namespace", "k8s-namespace") in ls_waits
    assert key(each_stack, "kubernetes:external-secrets.io/v1:ExternalSecret",
               "k8s-secrets-db") in ls_waits
    assert find_cycle(graph) is None


def test_teardown_removes_the_load_balancer_first(each_stack: Plan) -> None:
    """The Ingress (whose deletion makes the controller delete the ALB and its security
    groups) depends on the controller, the nodes, the cluster and the VPC: it is destroyed
    before any of them."""
    graph = edges(each_stack)
    ingress = key(each_stack, INGRESS, "label-studio-ingress")
    waits = closure(graph, ingress)
    controller = key(each_stack, HELM_CHART, "k8s-lb-controller-chart")
    vpc = each_stack.of_type("aws:ec2/vpc:Vpc")[0].key
    groups = {r.key for r in each_stack.of_type(NODE_GROUP)}
    assert {controller, one(each_stack, CLUSTER).key, vpc, *groups} <= waits
    # nothing the controller needs waits on the Ingress (or it would go first)
    assert ingress not in closure(graph, controller)
    # the controller's objects are its chart's children: deleted with it, after the Ingress
    children = [r for r in each_stack.resources if r.parent_key == controller]
    assert any(r.type == "kubernetes:apps/v1:Deployment" for r in children)


def test_chart_objects_are_listed_in_the_plan(each_stack: Plan) -> None:
    names = {r.name for r in each_stack.resources if r.type == "kubernetes:apps/v1:Deployment"}
    assert "label-studio/labelstack/label-studio-ls-app" in names
    assert any(n.startswith("k8s-lb-controller-chart/kube-system/") for n in names)
    assert any(n.startswith("k8s-secrets-operator/external-secrets/") for n in names)
