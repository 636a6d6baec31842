"""The Kubernetes layer in the dependency graph: cluster -> add-ons -> controllers -> Label
Studio, and a teardown order that removes the controller-made load balancer before the
controller, the nodes, the cluster and the VPC (``pulumi destroy`` deletes dependents
first)."""

from __future__ import annotations

import pytest

from infra.k8s.label_studio_values import ADMIN_SECRET
from infra.offline import HELM_CHART, Plan
from tests.compute_helpers import CLUSTER, NODE_GROUP, one
from tests.test_graph import closure, edges, find_cycle

INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
SECRET = "kubernetes:core/v1:Secret"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
LABEL_STUDIO_APP = "label-studio/labelstack/label-studio-ls-app"
#: Image digests set: the ML layer declares the SAM2 backend and the bootstrap Job too.
ML_DIGESTS = {"sam2ImageDigest": "sha256:" + "1" * 64, "bootstrapImageDigest": "sha256:" + "2" * 64,
              "sam2WeightsSha256": "a" * 64}


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


def admin_secret(plan: Plan) -> str:
    """The key of the one Secret Label Studio reads its first user and token from."""
    found = [r.key for r in plan.of_type(SECRET) if r.inputs["metadata"]["name"] == ADMIN_SECRET]
    assert len(found) == 1, found
    assert len(plan.of_type("labelstack:k8s:AdminCredentials")) == 1
    return found[0]


def test_label_studio_waits_for_its_admin_secret(each_stack: Plan) -> None:
    """Label Studio's pods read the admin Secret at start: the chart and its Deployment are
    created after it (and so deleted before it)."""
    graph = edges(each_stack)
    secret = admin_secret(each_stack)
    chart = key(each_stack, HELM_CHART, "label-studio")
    assert secret in closure(graph, chart)
    assert secret in closure(graph, key(each_stack, DEPLOYMENT, LABEL_STUDIO_APP))
    assert chart not in closure(graph, secret)


@pytest.fixture(scope="module")
def ml_plan() -> Plan:
    from infra import offline

    return offline.run("dev", ML_DIGESTS)


def test_ml_layer_reuses_the_admin_secret(ml_plan: Plan) -> None:
    """One Secret, one set of generated values, shared by Label Studio, the SAM2 backend and
    the bootstrap Job, which all wait for it."""
    graph = edges(ml_plan)
    secret = admin_secret(ml_plan)
    job = one(ml_plan, "kubernetes:batch/v1:Job").key
    sam2 = next(r.key for r in ml_plan.of_type(DEPLOYMENT)
                if r.inputs["metadata"]["name"] == "sam2-backend")
    for waiter in (job, sam2, key(ml_plan, HELM_CHART, "label-studio"),
                   key(ml_plan, DEPLOYMENT, LABEL_STUDIO_APP)):
        assert secret in closure(graph, waiter), waiter
    generated = [r.name for r in ml_plan.of_type("random:index/randomPassword:RandomPassword")
                 if r.name.startswith("admin-")]
    assert sorted(generated) == ["admin-api-token", "admin-password"]
    assert find_cycle(graph) is None
