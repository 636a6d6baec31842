"""VPC, subnets and security groups: no path from the internet unless configured, flow logs
on, and the egress/ingress relaxations flagged."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from policies.model import ADVISORY, HIGH, LOW, MEDIUM, Rule, StackView
from policies.rules._util import as_list, get, related, world

SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SG_TYPES = (SG, SG_RULE, INGRESS_RULE, EGRESS_RULE)
DEFAULT_SG = ("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",)
VPC = "aws:ec2/vpc:Vpc"
FLOW_LOG = ("aws:ec2/flowLog:FlowLog",)
SUBNET = ("aws:ec2/subnet:Subnet",)
NAT = ("aws:ec2/natGateway:NatGateway",)
IGW = ("aws:ec2/internetGateway:InternetGateway",)
INSTANCE = ("aws:ec2/instance:Instance",)
LAUNCH_TEMPLATE = ("aws:ec2/launchTemplate:LaunchTemplate",)
ENDPOINT = ("aws:ec2/vpcEndpoint:VpcEndpoint",)
#: Ports the public load balancer may expose to the internet (ingressMode=public).
WEB_PORTS = {80, 443}


def _permissions(resource_type: str, props: Mapping[str, Any], direction: str
                 ) -> list[tuple[int, int, list[str]]]:
    """(fromPort, toPort, internet CIDRs) per rule in ``direction`` (ingress or egress)."""
    out = []
    if resource_type == SG:
        for r in as_list(props.get(direction)):
            cidrs = as_list(r.get("cidrBlocks")) + as_list(r.get("ipv6CidrBlocks"))
            out.append((_port(r, "fromPort", 0), _port(r, "toPort", 65535), world(cidrs),
                        str(r.get("protocol"))))
    elif resource_type == SG_RULE and props.get("type") == direction:
        cidrs = as_list(props.get("cidrBlocks")) + as_list(props.get("ipv6CidrBlocks"))
        out.append((_port(props, "fromPort", 0), _port(props, "toPort", 65535), world(cidrs),
                    str(props.get("protocol"))))
    elif resource_type == {"ingress": INGRESS_RULE, "egress": EGRESS_RULE}[direction]:
        cidrs = [props.get("cidrIpv4"), props.get("cidrIpv6")]
        out.append((_port(props, "fromPort", 0), _port(props, "toPort", 65535), world(cidrs),
                    str(props.get("ipProtocol"))))
    return [(lo, hi, w) if proto not in ("-1", "all") else (0, 65535, w)
            for lo, hi, w, proto in out if w]


def _port(r: Mapping[str, Any], key: str, default: int) -> int:
    v = r.get(key)
    return default if v in (None, -1) else int(v)


def _ports(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def sg_check(direction: str, want_web: bool | None):
    """A resource check over internet-wide rules; ``want_web`` selects web ports (True),
    non-web ports (False) or all (None)."""

    def check(props: Mapping[str, Any], resource_type: str) -> Iterator[str]:
        for lo, hi, cidrs in _permissions(resource_type, props, direction):
            web = lo == hi and lo in WEB_PORTS
            if want_web is None or web == want_web:
                verb = "from" if direction == "ingress" else "to"
                yield f"{direction} on port {_ports(lo, hi)} {verb} {', '.join(cidrs)}"
    return check


def check_default_sg(props: Mapping[str, Any]) -> Iterator[str]:
    rules = as_list(props.get("ingress")) + as_list(props.get("egress"))
    if rules:
        yield f"the default security group keeps {len(rules)} rule(s); it must allow nothing"


def check_flow_logs(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for vpc in view.of_type(VPC):
        logs = related(view, vpc, FLOW_LOG, "vpcId")
        if not any(lg.props.get("trafficType") in ("ALL", "REJECT") for lg in logs):
            yield vpc, f"VPC {vpc.name} has no flow log capturing ALL (or REJECT) traffic"


def check_subnet_public_ip(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("mapPublicIpOnLaunch"):
        yield "mapPublicIpOnLaunch gives every instance in the subnet a public IP"


def check_nat(props: Mapping[str, Any]) -> Iterator[str]:
    yield ("NAT gateway: workloads can reach the whole internet; relaxation egressMode=nat")


def check_igw(props: Mapping[str, Any]) -> Iterator[str]:
    yield ("internet gateway: the VPC has a route to the internet (ingressMode=public or "
           "egressMode=nat)")


def check_instance_public_ip(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("associatePublicIpAddress"):
        yield "associatePublicIpAddress gives the instance a public IP"


def check_imdsv2(props: Mapping[str, Any]) -> Iterator[str]:
    tokens = get(props, "metadataOptions", "httpTokens")
    if get(props, "metadataOptions", "httpEndpoint") == "disabled":
        return
    if tokens != "required":
        yield f"metadataOptions.httpTokens is {tokens or 'unset'}, not required (IMDSv2)"


def check_endpoint_policy(props: Mapping[str, Any]) -> Iterator[str]:
    service = str(props.get("serviceName") or "")
    if service.endswith(".s3") and props.get("vpcEndpointType", "Gateway") == "Gateway" and \
            not props.get("policy"):
        yield f"S3 gateway endpoint {service} has no endpoint policy (any bucket reachable)"


_S = "network"
RULES = [
    Rule("sg-no-internet-ingress", "Security groups accept nothing from the internet except "
         "web ports (80/443).", _S, HIGH, "164.312(a)(1)",
         "AWS Config vpc-sg-open-only-to-authorized-ports / restricted-ssh",
         "Limit the source to the VPC, a security group or named CIDRs.",
         sg_check("ingress", False), types=SG_TYPES, typed=True),
    Rule("sg-internet-web-ingress", "Flags web ports open to the internet: the "
         "ingressMode=public relaxation.", _S, LOW, "164.312(e)(1)",
         "AWS Config restricted-common-ports", "Use ingressMode=internal and reach Label "
         "Studio over VPN / private connectivity.", sg_check("ingress", True),
         types=SG_TYPES, typed=True, enforcement=ADVISORY),
    Rule("sg-internet-egress", "Flags security groups that can send to the whole internet: "
         "the egressMode=nat relaxation.", _S, LOW, "164.312(e)(1)", "checkov CKV_AWS_382",
         "Use egressMode=none; reach AWS services through VPC endpoints.",
         sg_check("egress", None), types=SG_TYPES, typed=True, enforcement=ADVISORY),
    Rule("vpc-default-sg-closed", "The VPC's default security group allows no traffic.", _S,
         MEDIUM, "164.312(a)(1)", "AWS Config vpc-default-security-group-closed",
         "Declare the DefaultSecurityGroup with no ingress and no egress rules.",
         check_default_sg, types=DEFAULT_SG),
    Rule("vpc-flow-logs", "Every VPC has flow logs.", _S, MEDIUM, "164.312(b)",
         "AWS Config vpc-flow-logs-enabled", "Add an aws.ec2.FlowLog with trafficType ALL on "
         "the VPC.", check_flow_logs),
    Rule("subnet-no-auto-public-ip", "Subnets never hand out public IPs automatically.", _S,
         MEDIUM, "164.312(a)(1)", "AWS Config subnet-auto-assign-public-ip-disabled",
         "Set mapPublicIpOnLaunch false.", check_subnet_public_ip, types=SUBNET),
    Rule("vpc-nat-egress-relaxation", "Flags NAT gateways: the egressMode=nat relaxation.", _S,
         LOW, "164.312(e)(1)", "custom (labelstack relaxation)", "Use egressMode=none; pull "
         "images through ECR and reach AWS through VPC endpoints.", check_nat, types=NAT,
         enforcement=ADVISORY),
    Rule("vpc-internet-gateway-relaxation", "Flags internet gateways (public subnets).", _S,
         LOW, "164.312(e)(1)", "custom (labelstack relaxation)", "Use ingressMode=internal and "
         "egressMode=none.", check_igw, types=IGW, enforcement=ADVISORY),
    Rule("ec2-no-public-ip", "EC2 instances get no public IP.", _S, HIGH, "164.312(a)(1)",
         "AWS Config ec2-instance-no-public-ip", "Set associatePublicIpAddress false; reach "
         "instances through SSM.", check_instance_public_ip, types=INSTANCE),
    Rule("ec2-imdsv2-required", "EC2 instances and launch templates require IMDSv2 tokens.",
         _S, HIGH, "164.312(a)(1)", "AWS Config ec2-imdsv2-check",
         "Set metadataOptions.httpTokens required.", check_imdsv2,
         types=(*INSTANCE, *LAUNCH_TEMPLATE)),
    Rule("vpc-s3-endpoint-policy", "S3 gateway endpoints carry a policy limiting the buckets "
         "reachable through them.", _S, MEDIUM, "164.312(e)(1)",
         "custom (AWS data perimeter: VPC endpoint policy)", "Attach an endpoint policy "
         "allowing only this account's buckets (aws:ResourceAccount).", check_endpoint_policy,
         types=ENDPOINT),
]
