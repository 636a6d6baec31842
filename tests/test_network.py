"""Network: private subnets per AZ, no public IPs, emptied default SG, endpoints or NAT,
flow logs to a KMS-encrypted log group."""

from __future__ import annotations

import ipaddress
import json

import pytest

from infra.network import INTERFACE_ENDPOINTS, plan_subnets
from infra.offline import Plan

SUBNET = "aws:ec2/subnet:Subnet"
ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
NAT = "aws:ec2/natGateway:NatGateway"
IGW = "aws:ec2/internetGateway:InternetGateway"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"


def _tier(plan: Plan, tier: str) -> list:
    return [s for s in plan.of_type(SUBNET) if s.inputs["tags"]["Tier"] == tier]


def test_subnets_per_az_private_and_inside_the_vpc(each_stack: Plan) -> None:
    vpc = each_stack.of_type("aws:ec2/vpc:Vpc")
    assert len(vpc) == 1
    cidr = ipaddress.ip_network(vpc[0].inputs["cidrBlock"])
    azs = 3 if each_stack.stack == "prod" else 2
    for tier in ("app", "data"):
        subnets = _tier(each_stack, tier)
        assert len(subnets) == azs
        assert len({s.inputs["availabilityZone"] for s in subnets}) == azs
    blocks = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in each_stack.of_type(SUBNET)]
    for i, block in enumerate(blocks):
        assert block.subnet_of(cidr)
        assert not any(block.overlaps(other) for other in blocks[i + 1:])
    for subnet in each_stack.of_type(SUBNET):
        assert subnet.inputs["mapPublicIpOnLaunch"] is False


@pytest.mark.parametrize("cidr,azs", [("10.0.0.0/16", 3), ("172.20.0.0/20", 3),
                                      ("192.168.0.0/18", 2)])
def test_subnet_layout_never_overlaps(cidr: str, azs: int) -> None:
    layout = plan_subnets(cidr, azs)
    nets = [ipaddress.ip_network(c) for c in (*layout.app, *layout.data, *layout.public)]
    assert len(nets) == 3 * azs
    assert all(n.subnet_of(ipaddress.ip_network(cidr)) for n in nets)
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


def test_default_security_group_is_emptied(each_stack: Plan) -> None:
    (sg,) = each_stack.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert sg.inputs.get("ingress", []) == [] and sg.inputs.get("egress", []) == []


def test_egress_none_has_endpoints_and_no_internet_path(each_stack: Plan) -> None:
    assert each_stack.of_type(NAT) == [] and each_stack.of_type(IGW) == []
    assert _tier(each_stack, "public") == []
    for table in each_stack.of_type(ROUTE_TABLE):
        assert table.inputs.get("routes", []) == []
    endpoints = {e.inputs["serviceName"]: e for e in each_stack.of_type(ENDPOINT)}
    gateway = endpoints.pop("com.amazonaws.us-east-1.s3")
    assert gateway.inputs["vpcEndpointType"] == "Gateway"
    # the gateway serves every private route table
    assert len(gateway.inputs["routeTableIds"]) == len(each_stack.of_type(ROUTE_TABLE))
    assert set(endpoints) == {f"com.amazonaws.us-east-1.{s}" for s in INTERFACE_ENDPOINTS}
    sg = each_stack.named("network-endpoints-sg")
    vpc_cidr = each_stack.of_type("aws:ec2/vpc:Vpc")[0].inputs["cidrBlock"]
    assert sg.inputs["ingress"] == [{"cidrBlocks": [vpc_cidr], "description": "HTTPS from the VPC",
                                     "fromPort": 443, "protocol": "tcp", "toPort": 443}]
    assert sg.inputs.get("egress", []) == []
    for ep in endpoints.values():
        assert ep.inputs["vpcEndpointType"] == "Interface"
        assert ep.inputs["privateDnsEnabled"] is True
        assert ep.inputs["securityGroupIds"] == ["network-endpoints-sg-id"]
        assert len(ep.inputs["subnetIds"]) == len(_tier(each_stack, "app"))


def test_nat_mode_routes_app_subnets_only(plan_with) -> None:
    plan = plan_with("dev", egressMode="nat")
    (nat,) = plan.of_type(NAT)
    assert nat.inputs["availabilityMode"] == "regional"
    assert len(plan.of_type(IGW)) == 1
    assert _tier(plan, "public") == []  # a regional NAT gateway needs no public subnet
    tables = {t.name: t for t in plan.of_type(ROUTE_TABLE)}
    for name, table in tables.items():
        routes = table.inputs.get("routes", [])
        if name.startswith("network-app-rt"):
            assert routes == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": "network-nat-id"}]
        else:
            assert routes == [], name
    assert not any(e.inputs["vpcEndpointType"] == "Interface" for e in plan.of_type(ENDPOINT))


def test_public_subnets_only_with_public_ingress(plan_with) -> None:
    plan = plan_with("dev", ingressMode="public")
    public = _tier(plan, "public")
    assert len(public) == 2
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in public)
    assert all(s.inputs["tags"]["kubernetes.io/role/elb"] == "1" for s in public)
    rt = plan.named("network-public-rt")
    assert rt.inputs["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": "network-igw-id"}]
    assert plan.outputs["publicSubnetIds"] == [s.name + "-id" for s in public]


def test_flow_logs_to_kms_log_group(each_stack: Plan) -> None:
    (flow,) = each_stack.of_type("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["trafficType"] == "ALL"
    group = each_stack.named("network-flow-logs")
    assert flow.inputs["logDestination"].endswith(":log-group:" + group.inputs["name"])
    assert group.inputs["kmsKeyId"].endswith("key/keys-logs-key-id")
    assert group.inputs["retentionInDays"] == int(
        each_stack.config["labelstack:logRetentionDays"])
    trust = json.loads(each_stack.named("network-flow-logs-role").inputs["assumeRolePolicy"])
    (stmt,) = trust["Statement"]
    assert stmt["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert stmt["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"


def test_s3_endpoint_policy_is_a_data_perimeter(each_stack: Plan) -> None:
    policy = json.loads(each_stack.named("network-s3").inputs["policy"])
    stmts = {s["Sid"]: s for s in policy["Statement"]}
    assert set(stmts) == {"OwnAccountBuckets", "EcrImageLayers"}
    own = stmts["OwnAccountBuckets"]
    assert own["Condition"] == {"StringEquals": {"aws:ResourceAccount": "123456789012"}}
    assert "s3:*" not in own["Action"] and "s3:PutBucketPolicy" not in own["Action"]
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= set(own["Action"])
    ecr = stmts["EcrImageLayers"]
    assert (ecr["Action"], ecr["Resource"]) == (
        "s3:GetObject", "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*")
    assert "Condition" not in ecr  # AWS owns that bucket


def test_no_pod_identity_endpoint_without_pod_identity(each_stack: Plan) -> None:
    """eks-auth serves only the EKS Pod Identity agent; workloads use IRSA through sts."""
    services = {e.inputs["serviceName"] for e in each_stack.of_type(ENDPOINT)}
    assert "com.amazonaws.us-east-1.eks-auth" not in services
    assert "com.amazonaws.us-east-1.sts" in services
    assert not each_stack.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert "eks-pod-identity-agent" not in {
        a.inputs["addonName"] for a in each_stack.of_type("aws:eks/addon:Addon")}
