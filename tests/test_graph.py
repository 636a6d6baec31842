"""The dependency graph of the plan (``depends_on`` + input sources + parents): no cycles,
the EKS cluster waits only on what it needs, the layers come up in a workable order, and an
ephemeral stack goes away in one ``pulumi destroy``."""

from __future__ import annotations

from collections import defaultdict

from infra.offline import Plan, PlannedResource
from tests.compute_helpers import ADDON, CLUSTER, ECR, NODE_GROUP, RDS, addons, node_groups, one

#: What the control plane may (transitively) wait on.
CLUSTER_MAY_NEED = {
    "aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/rolePolicy:RolePolicy", "aws:ec2/subnet:Subnet", "aws:ec2/vpc:Vpc",
    "aws:kms/key:Key", "aws:cloudwatch/logGroup:LogGroup",
    "aws:ec2/securityGroup:SecurityGroup",
}


def edges(plan: Plan) -> dict[str, set[str]]:
    """key -> keys it waits for (keys are ``<type>::<name>``). A dependency on a component
    means all its descendants (on a custom resource, only that resource); a child also
    points at its parent."""
    components = {r.key for r in plan.resources if not r.custom}
    children: dict[str, set[str]] = defaultdict(set)
    for r in plan.resources:
        if r.parent_key:
            children[r.parent_key].add(r.key)

    def descendants(name: str) -> set[str]:
        out = set()
        for c in children.get(name, ()):
            out |= {c, *descendants(c)}
        return out

    graph: dict[str, set[str]] = {}
    for r in plan.resources:
        deps = set()
        for d in r.depends_on_keys:
            deps |= {d, *(descendants(d) if d in components else ())}
        if r.parent_key:
            deps.add(r.parent_key)
        graph[r.key] = deps
    return graph


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    """Everything ``start`` transitively waits for."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(graph.get(n, ()))
    return seen


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of names, or None (iterative three-colour DFS)."""
    state: dict[str, int] = {}
    for root in graph:
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph[root])))]
        state[root], path = 1, [root]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


def test_keys_are_unique_and_edges_resolve(each_stack: Plan) -> None:
    keys = [r.key for r in each_stack.resources]
    assert len(keys) == len(set(keys))  # the graph is keyed by type and name
    for r in each_stack.resources:
        assert r.depends_on_keys <= set(keys), r.key
        assert {k.split("::", 1)[1] for k in r.depends_on_keys} == r.depends_on
        assert r.parent_key is None or r.parent_key in keys


def test_no_dependency_cycles(each_stack: Plan) -> None:
    assert find_cycle(edges(each_stack)) is None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_cluster_waits_only_on_what_it_needs(each_stack: Plan) -> None:
    graph = edges(each_stack)
    eks = one(each_stack, CLUSTER)
    custom = {r.key: r.type for r in each_stack.resources if r.custom}
    waits = closure(graph, eks.key)
    needed = {custom[k] for k in waits if k in custom}
    assert needed <= CLUSTER_MAY_NEED, needed - CLUSTER_MAY_NEED
    # and it does wait on each thing it uses
    assert {"aws:iam/role:Role", "aws:ec2/subnet:Subnet", "aws:kms/key:Key",
            "aws:cloudwatch/logGroup:LogGroup"} <= needed
    for banned in (RDS, ECR, NODE_GROUP, ADDON, "aws:s3/bucket:Bucket"):
        assert not {r.key for r in each_stack.of_type(banned)} & waits, banned


def test_layers_come_up_in_a_workable_order(each_stack: Plan) -> None:
    graph = edges(each_stack)
    found, groups = addons(each_stack), node_groups(each_stack)
    for g in groups.values():
        waits = closure(graph, g.key)
        # nodes need the CNI and kube-proxy to become Ready, and the VPC endpoints to join
        assert {found["vpc-cni"].key, found["kube-proxy"].key} <= waits
        endpoints = {r.key for r in each_stack.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
        assert endpoints <= waits
    for name in ("coredns", "aws-ebs-csi-driver"):
        assert {g.key for g in groups.values()} <= closure(graph, found[name].key)
    # the database and registries do not wait for the nodes or add-ons
    for independent in (*each_stack.of_type(RDS), *each_stack.of_type(ECR)):
        waits = closure(graph, independent.key)
        assert not waits & {r.key for r in (*groups.values(), *found.values())}


def test_ephemeral_is_destroyable_in_one_go(stack_plan) -> None:
    plan = stack_plan("ephemeral")
    # only the account's service-linked roles outlive it (other stacks and services use them)
    assert [r.name for r in plan.resources if (r.protect or r.retain_on_delete)
            and r.type != "aws:iam/serviceLinkedRole:ServiceLinkedRole"] == []
    db = one(plan, RDS).inputs
    assert db["deletionProtection"] is False and db["skipFinalSnapshot"] is True
    assert one(plan, CLUSTER).inputs["deletionProtection"] is False
    assert all(r.inputs["forceDelete"] for r in plan.of_type(ECR))
    for group in plan.of_type("aws:cloudwatch/logGroup:LogGroup"):
        assert not group.inputs.get("skipDestroy")


def test_waiting_on_a_component_means_waiting_on_its_children() -> None:
    comp = PlannedResource("labelstack:compute:Database", "db", {}, custom=False)
    rds = PlannedResource(RDS, "db-postgres", {}, parent="db",
                          parent_key="labelstack:compute:Database::db")
    eks = PlannedResource(CLUSTER, "eks", {}, depends_on={"db"},
                          depends_on_keys={"labelstack:compute:Database::db"})
    graph = edges(Plan("x", {}, [comp, rds, eks], {}, []))
    assert rds.key in closure(graph, eks.key)
    # a custom resource's children (bucket settings parented to a bucket) are not waited on
    bucket = PlannedResource("aws:s3/bucket:Bucket", "b", {})
    setting = PlannedResource("aws:s3/bucketVersioning:BucketVersioning", "b-v", {},
                              parent="b", parent_key=bucket.key, depends_on={"b"},
                              depends_on_keys={bucket.key})
    user = PlannedResource(RDS, "u", {}, depends_on={"b"}, depends_on_keys={bucket.key})
    graph = edges(Plan("x", {}, [bucket, setting, user], {}, []))
    assert closure(graph, user.key) == {bucket.key}
    assert find_cycle(graph) is None
