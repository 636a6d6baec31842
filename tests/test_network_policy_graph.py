"""The namespace's NetworkPolicies, as the program declares them, evaluated as a graph:
only the load balancer reaches Label Studio's port, only Label Studio reaches SAM2's port,
Label Studio reaches PostgreSQL, and no pod has egress to the whole internet."""

from __future__ import annotations

import ipaddress

import pytest

from infra.k8s import netpol
from infra.k8s.label_studio_values import CONTAINER_PORT
from infra.k8s.netpol_graph import Cluster, External, Pod
from infra.network import plan_subnets
from infra.offline import Plan
from tests.test_k8s_label_studio import of_kind, rendered

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _host(cidr: str) -> str:
    return str(next(ipaddress.ip_network(cidr).hosts()))


def world(plan: Plan) -> tuple[Cluster, dict[str, Pod | External]]:
    """The plan's policies, Label Studio's pod as the chart renders it, a SAM2 pod, other
    pods, and addresses outside the pod network."""
    ns = plan.config.get("labelstack:namespace", "labelstack")
    policies = [{"kind": "NetworkPolicy", **r.inputs} for r in plan.resources
                if r.type == NETPOL]
    template = of_kind(rendered(plan), "Deployment")[0]["spec"]["template"]
    layout = plan_subnets(plan.config.get("labelstack:vpcCidr", "10.40.0.0/16"),
                          int(plan.config.get("labelstack:azCount", "2")))
    peers: dict[str, Pod | External] = {
        "label-studio": Pod("label-studio", ns, template["metadata"]["labels"]),
        "sam2": Pod("sam2", ns, netpol.SAM2_POD_LABELS),
        "other-pod": Pod("other-pod", ns, {"app": "bootstrap"}),
        "foreign-pod": Pod("foreign-pod", "default", {"app": "x"}),
        "coredns": Pod("coredns", "kube-system", netpol.DNS_POD_LABELS),
        "load-balancer": External("load-balancer", _host(layout.app[0])),
        "postgres": External("postgres", _host(layout.data[0])),
        "internet": External("internet", "8.8.8.8"),
    }
    return Cluster(policies), peers


@pytest.fixture(params=["dev", "prod"])
def graph(request, stack_plan):
    return world(stack_plan(request.param))


def test_only_the_load_balancer_reaches_label_studio(graph) -> None:
    cluster, peers = graph
    ls = peers["label-studio"]
    assert cluster.who_reaches(ls, CONTAINER_PORT, peers.values()) == {"load-balancer"}
    # and on no other port
    assert cluster.who_reaches(ls, 8000, peers.values()) == set()


def test_only_label_studio_reaches_sam2(graph) -> None:
    cluster, peers = graph
    assert cluster.who_reaches(peers["sam2"], netpol.SAM2_PORT, peers.values()) == {
        "label-studio"}


def test_label_studio_reaches_postgres_and_dns_only_where_allowed(graph) -> None:
    cluster, peers = graph
    ls = peers["label-studio"]
    assert cluster.allowed(ls, peers["postgres"], netpol.POSTGRES_PORT)
    assert cluster.allowed(ls, peers["coredns"], 53, "UDP")
    assert not cluster.allowed(ls, peers["postgres"], 22)
    assert not cluster.allowed(ls, peers["internet"], 443)
    assert not cluster.allowed(peers["other-pod"], peers["postgres"], netpol.POSTGRES_PORT)


def test_no_pod_has_egress_to_the_internet(graph) -> None:
    cluster, peers = graph
    for pod in (p for p in peers.values() if isinstance(p, Pod) and p.namespace != "default"
                and p.namespace != "kube-system"):
        assert cluster.open_egress(pod) == [], pod.name
        assert not cluster.allowed(pod, peers["internet"], 443)


def test_public_ingress_moves_the_load_balancer_to_the_public_subnets(plan_with) -> None:
    plan = plan_with("dev", ingressMode="public")
    cluster, peers = world(plan)
    public = plan_subnets("10.40.0.0/16", 2).public[0]
    peers["load-balancer"] = External("load-balancer", _host(public))
    assert cluster.who_reaches(peers["label-studio"], CONTAINER_PORT,
                               peers.values()) == {"load-balancer"}


# ---- the evaluator itself -------------------------------------------------------------------
def _np(name, selector, types, ingress=None, egress=None, ns="a"):
    spec = {"podSelector": selector, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_evaluator_open_by_default_and_deny_when_selected() -> None:
    web, db = Pod("web", "a", {"app": "web"}), Pod("db", "a", {"app": "db"})
    assert Cluster([]).allowed(web, db, 5432)
    deny = _np("deny", {}, ["Ingress"], ingress=[])
    assert not Cluster([deny]).allowed(web, db, 5432)
    allow = _np("allow", {"matchLabels": {"app": "db"}}, ["Ingress"], ingress=[
        {"from": [{"podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web"]}]}}],
         "ports": [{"protocol": "TCP", "port": 5000, "endPort": 6000}]}])
    c = Cluster([deny, allow])
    assert c.allowed(web, db, 5432) and not c.allowed(web, db, 7000)
    assert not c.allowed(Pod("web", "b", {"app": "web"}), db, 5432)  # other namespace


def test_evaluator_flags_open_egress() -> None:
    pod = Pod("p", "a", {"app": "p"})
    assert Cluster([]).open_egress(pod)  # nothing restricts it
    anything = _np("any", {}, ["Egress"], egress=[{"ports": [{"port": 443}]}])
    assert "allows every destination" in Cluster([anything]).open_egress(pod)[0]
    world_block = _np("w", {}, ["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])
    c = Cluster([world_block])
    assert "0.0.0.0/0" in c.open_egress(pod)[0]
    assert c.allowed(pod, External("x", "8.8.8.8"), 443)
    narrowed = _np("n", {}, ["Egress"], egress=[{"to": [{"ipBlock": {
        "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}])
    c = Cluster([narrowed])
    assert c.open_egress(pod) == []
    assert c.allowed(pod, External("x", "10.2.0.1"), 1)
    assert not c.allowed(pod, External("x", "10.1.0.1"), 1)


# ---- with the ML layer deployed (image digests set): SAM2 backend and bootstrap Job ----------
ML_DIGESTS = {"sam2ImageDigest": "sha256:" + "1" * 64, "bootstrapImageDigest": "sha256:" + "2" * 64,
              "sam2WeightsSha256": "a" * 64}


@pytest.fixture(scope="module")
def ml_graph():
    from infra import offline

    plan = offline.run("dev", ML_DIGESTS)
    cluster, peers = world(plan)
    sam2 = next(r for r in plan.resources if r.type == "kubernetes:apps/v1:Deployment"
                and r.inputs["metadata"]["name"] == "sam2-backend")
    job = next(r for r in plan.resources if r.type == "kubernetes:batch/v1:Job")
    ns = plan.config.get("labelstack:namespace", "labelstack")
    peers["sam2"] = Pod("sam2", ns, sam2.inputs["spec"]["template"]["metadata"]["labels"])
    peers["bootstrap"] = Pod("bootstrap", ns,
                             job.inputs["spec"]["template"]["metadata"]["labels"])
    return cluster, peers


def test_deployed_only_label_studio_reaches_sam2(ml_graph) -> None:
    cluster, peers = ml_graph
    assert cluster.who_reaches(peers["sam2"], netpol.SAM2_PORT, peers.values()) == {
        "label-studio"}
    assert cluster.who_reaches(peers["sam2"], 22, peers.values()) == set()


def test_deployed_label_studio_admits_backend_and_bootstrap_besides_the_load_balancer(
        ml_graph) -> None:
    cluster, peers = ml_graph
    assert cluster.who_reaches(peers["label-studio"], CONTAINER_PORT, peers.values()) == {
        "load-balancer", "sam2", "bootstrap"}


def test_deployed_backend_and_bootstrap_egress(ml_graph) -> None:
    cluster, peers = ml_graph
    sam2, job = peers["sam2"], peers["bootstrap"]
    assert cluster.allowed(sam2, peers["label-studio"], CONTAINER_PORT)
    assert cluster.allowed(sam2, peers["coredns"], 53, "UDP")
    assert cluster.allowed(job, peers["label-studio"], CONTAINER_PORT)
    assert not cluster.allowed(job, peers["sam2"], netpol.SAM2_PORT)
    for pod in (sam2, job):
        assert not cluster.allowed(pod, peers["postgres"], netpol.POSTGRES_PORT), pod.name
        assert not cluster.allowed(pod, peers["internet"], 443), pod.name
        assert cluster.open_egress(pod) == [], pod.name
