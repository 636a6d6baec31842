"""No security group anywhere in the plan admits 0.0.0.0/0 or ::/0, and the database port
is reachable only from the EKS cluster security group."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from infra.database import PORT
from infra.offline import Plan, PlannedResource
from tests.compute_helpers import RDS, SG, one

DEFAULT_SG = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
KNOWN = {SG, DEFAULT_SG, SG_RULE, INGRESS_RULE, EGRESS_RULE}

#: Stacks with every relaxation switched on, on top of the shipped stack files.
RELAXED = {"egressMode": "nat", "ingressMode": "public",
           "clusterPublicAccessCidrs": ["203.0.113.0/24"]}


def ingress_rules(plan: Plan) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Every ingress rule as ``(resource name, target SG id or None for inline, rule)``.

    Rules are normalised to ``cidrs``, ``from``, ``to``, ``protocol``, ``source_sg``.
    Unknown security-group resource types fail loudly rather than being skipped.
    """
    for r in plan.resources:
        if "ecurityGroup" not in r.type:
            continue
        assert r.type in KNOWN, f"{r.type} ({r.name}) is not understood by this test"
        if r.type in (SG, DEFAULT_SG):
            for rule in r.inputs.get("ingress") or []:
                yield r.name, f"{r.name}-id", {
                    "cidrs": [*(rule.get("cidrBlocks") or []),
                              *(rule.get("ipv6CidrBlocks") or [])],
                    "from": rule.get("fromPort"), "to": rule.get("toPort"),
                    "protocol": rule.get("protocol"),
                    "source_sg": rule.get("securityGroups") or []}
        elif r.type == SG_RULE and r.inputs.get("type") == "ingress":
            yield r.name, r.inputs.get("securityGroupId"), {
                "cidrs": [*(r.inputs.get("cidrBlocks") or []),
                          *(r.inputs.get("ipv6CidrBlocks") or [])],
                "from": r.inputs.get("fromPort"), "to": r.inputs.get("toPort"),
                "protocol": r.inputs.get("protocol"),
                "source_sg": [s for s in [r.inputs.get("sourceSecurityGroupId")] if s]}
        elif r.type == INGRESS_RULE:
            yield r.name, r.inputs.get("securityGroupId"), {
                "cidrs": [c for c in (r.inputs.get("cidrIpv4"), r.inputs.get("cidrIpv6")) if c],
                "from": r.inputs.get("fromPort"), "to": r.inputs.get("toPort"),
                "protocol": r.inputs.get("ipProtocol"),
                "source_sg": [s for s in [r.inputs.get("referencedSecurityGroupId")] if s]}


def open_to_the_world(plan: Plan) -> list[str]:
    """Names of resources holding an ingress rule from a /0 (IPv4 or IPv6)."""
    return [name for name, _, rule in ingress_rules(plan)
            if any(ipaddress.ip_network(c, strict=False).prefixlen == 0 for c in rule["cidrs"])]


def covers(rule: dict[str, Any], port: int) -> bool:
    """Whether a normalised rule admits TCP ``port`` (all-traffic rules admit every port)."""
    if str(rule["protocol"]) in ("-1", "all"):
        return True
    return rule["from"] is not None and rule["from"] <= port <= (rule["to"] or rule["from"])


@pytest.fixture(params=["shipped", "relaxed"])
def plans(request: pytest.FixtureRequest, each_stack: Plan, plan_with) -> Plan:
    """Each shipped stack, and (outside prod) the same stack with every relaxation on."""
    if request.param == "shipped":
        return each_stack
    if each_stack.stack == "prod":
        return plan_with("prod", **{k: v for k, v in RELAXED.items()
                                    if k != "clusterPublicAccessCidrs"})
    return plan_with(each_stack.stack, **RELAXED)


def test_no_ingress_from_anywhere(plans: Plan) -> None:
    assert list(ingress_rules(plans))  # the scan saw rules at all
    assert open_to_the_world(plans) == []


@pytest.mark.parametrize("rule", [
    {"type": SG, "inputs": {"ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443,
                                         "cidrBlocks": ["10.0.0.0/16", "0.0.0.0/0"]}]}},
    {"type": SG, "inputs": {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0,
                                         "ipv6CidrBlocks": ["::/0"]}]}},
    {"type": SG_RULE, "inputs": {"type": "ingress", "cidrBlocks": ["0.0.0.0/0"],
                                 "fromPort": 22, "toPort": 22, "protocol": "tcp"}},
    {"type": INGRESS_RULE, "inputs": {"cidrIpv6": "::/0", "ipProtocol": "-1"}},
    {"type": INGRESS_RULE, "inputs": {"cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp",
                                      "fromPort": 5432, "toPort": 5432}},
])
def test_the_scan_catches_an_open_rule(rule: dict[str, Any]) -> None:
    plan = Plan("x", {}, [PlannedResource(rule["type"], "planted", rule["inputs"])], {}, [])
    assert open_to_the_world(plan) == ["planted"]


def test_the_scan_refuses_unknown_rule_types() -> None:
    plan = Plan("x", {}, [PlannedResource("aws:ec2/securityGroupNew:SecurityGroupNew", "x",
                                          {})], {}, [])
    with pytest.raises(AssertionError, match="not understood"):
        list(ingress_rules(plan))


def test_database_port_only_from_the_cluster_security_group(plans: Plan) -> None:
    db = one(plans, RDS)
    (db_sg,) = db.inputs["vpcSecurityGroupIds"]
    assert plans.named(db_sg.removesuffix("-id")).type == SG
    to_db = [rule for _, target, rule in ingress_rules(plans) if target == db_sg]
    assert len(to_db) == 1
    rule = to_db[0]
    assert rule["cidrs"] == []
    assert rule["source_sg"] == [plans.outputs["clusterSecurityGroupId"]]
    assert (rule["protocol"], rule["from"], rule["to"]) == ("tcp", PORT, PORT)
    # and nothing else in the VPC opens the PostgreSQL port
    others = [n for n, target, r in ingress_rules(plans) if target != db_sg and covers(r, PORT)]
    assert others == []


def test_database_security_group_has_no_egress(plans: Plan) -> None:
    (db_sg,) = one(plans, RDS).inputs["vpcSecurityGroupIds"]
    sg = plans.named(db_sg.removesuffix("-id"))
    assert not sg.inputs.get("egress") and not sg.inputs.get("ingress")
    assert [r for r in plans.of_type(EGRESS_RULE) if r.inputs["securityGroupId"] == db_sg] == []
