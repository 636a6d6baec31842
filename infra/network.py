"""Private network: VPC, app and data subnets per AZ, VPC endpoints or NAT, flow logs.

* No subnet assigns public IPs. The default security group is emptied (no rules).
* ``egressMode=none``: no internet route at all; the S3 gateway endpoint plus the
  interface endpoints a private EKS cluster needs, reachable on 443 from the VPC only.
  No ``eks-auth`` endpoint: it serves EKS Pod Identity only, and workloads use IRSA (STS).
* ``adminAccess=ssm``: the ``ssm``, ``ssmmessages`` and ``ec2messages`` endpoints too (in
  either egress mode), so Session Manager reaches the admin instance without internet.
* ``egressMode=nat``: an internet gateway and one *regional* NAT gateway (it spans the AZs
  and needs no public subnet); app subnets route to it, data subnets never do.
* ``ingressMode=public``: public subnets (for an internet-facing load balancer) and an
  internet gateway. They exist in no other case.
* Flow logs (all traffic) go to a KMS-encrypted log group with the configured retention.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.iam_documents import AwsContext

#: Interface endpoints a private EKS cluster (nodes, add-ons, IRSA, ALB controller,
#: cluster autoscaler, Label Studio, SAM2) needs when there is no internet route.
#: ``eks-auth`` is left out: only the EKS Pod Identity agent calls it, and this stack uses
#: IRSA (``sts`` above) instead of Pod Identity.
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "ec2", "logs", "kms", "secretsmanager",
                       "elasticloadbalancing", "autoscaling", "eks")
#: Endpoints Session Manager needs to reach an instance with no internet route.
SSM_ENDPOINTS = ("ssm", "ssmmessages", "ec2messages")

#: S3 calls the workloads make through the gateway endpoint (object data, listing, multipart).
#: Bucket administration is not among them: the deployment pipeline does that.
S3_ENDPOINT_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion",
                       "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                       "s3:ListMultipartUploadParts", "s3:ListBucket", "s3:ListBucketVersions",
                       "s3:ListBucketMultipartUploads", "s3:GetBucketLocation")


@dataclass
class NetworkArgs:
    """Inputs of :class:`Network` (all from the typed stack config)."""

    ctx: AwsContext
    cidr: str
    az_count: int
    egress_mode: str  # "none" | "nat"
    ingress_mode: str  # "internal" | "public"
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    #: ``none`` | ``ssm`` (Session Manager endpoints for the admin instance).
    admin_access: str = "none"


def interface_endpoints(egress_mode: str, admin_access: str) -> tuple[str, ...]:
    """The interface endpoints of a configuration, in creation order."""
    services = INTERFACE_ENDPOINTS if egress_mode == "none" else ()
    return services + (SSM_ENDPOINTS if admin_access == "ssm" else ())


@dataclass(frozen=True)
class SubnetPlan:
    """CIDR blocks per tier, one per AZ."""

    app: list[str]
    data: list[str]
    public: list[str]


def plan_subnets(cidr: str, az_count: int) -> SubnetPlan:
    """Carve the VPC: app subnets get 1/8 of the range each; data and public subnets 1/32.

    A /16 gives /19 app subnets (8190 addresses: pods take VPC IPs) and /21 data and
    public subnets; a /20 gives /23 and /25.
    """
    vpc = ipaddress.ip_network(cidr)
    eighths = list(vpc.subnets(prefixlen_diff=3))
    data = list(eighths[4].subnets(prefixlen_diff=2))
    public = list(eighths[5].subnets(prefixlen_diff=2))
    return SubnetPlan([str(n) for n in eighths[:az_count]],
                      [str(n) for n in data[:az_count]],
                      [str(n) for n in public[:az_count]])


def s3_endpoint_policy(ctx: AwsContext) -> dict:
    """Data perimeter on the S3 gateway endpoint: this account's buckets, plus the bucket ECR
    serves image layers from (nodes pull images through this endpoint)."""
    layers = ctx.region.apply(lambda r: f"arn:aws:s3:::prod-{r}-starport-layer-bucket/*")
    return iam.document(
        {"Sid": "OwnAccountBuckets", "Effect": "Allow", "Principal": "*",
         "Action": list(S3_ENDPOINT_ACTIONS),
         "Resource": ["arn:aws:s3:::*", "arn:aws:s3:::*/*"],
         "Condition": {"StringEquals": {"aws:ResourceAccount": ctx.account_id}}},
        {"Sid": "EcrImageLayers", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": layers},
    )


class Network(pulumi.ComponentResource):
    """VPC and everything that decides what can talk to what."""

    vpc_id: pulumi.Output[str]
    vpc_cidr: pulumi.Output[str]
    app_subnet_ids: list[pulumi.Output[str]]
    data_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]
    s3_endpoint_id: pulumi.Output[str]
    endpoint_security_group_id: pulumi.Output[str] | None
    availability_zones: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:data:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        layout = plan_subnets(args.cidr, args.az_count)
        zones = aws.get_availability_zones_output(state="available")
        self.availability_zones = [zones.names.apply(lambda n, i=i: n[i])
                                   for i in range(args.az_count)]

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, instance_tenancy="default",
                          tags={"Name": f"{name}-{pulumi.get_stack()}"}, opts=child)
        self.vpc_id, self.vpc_cidr = vpc.id, vpc.cidr_block
        # Adopt and empty the default security group: no ingress, no egress.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[],
                                     egress=[], opts=child)

        public_needed = args.ingress_mode == "public"
        igw = None
        if public_needed or args.egress_mode == "nat":
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, opts=child)

        def subnets(tier: str, cidrs: list[str], extra: dict[str, str]) -> list[aws.ec2.Subnet]:
            return [aws.ec2.Subnet(
                f"{name}-{tier}-{i}", vpc_id=vpc.id, cidr_block=cidr,
                availability_zone=self.availability_zones[i], map_public_ip_on_launch=False,
                assign_ipv6_address_on_creation=False,
                tags={"Name": f"{name}-{tier}-{i}", "Tier": tier, **extra}, opts=child)
                for i, cidr in enumerate(cidrs)]

        app = subnets("app", layout.app, {"kubernetes.io/role/internal-elb": "1"})
        data = subnets("data", layout.data, {})
        public = (subnets("public", layout.public, {"kubernetes.io/role/elb": "1"})
                  if public_needed else [])
        self.app_subnet_ids = [s.id for s in app]
        self.data_subnet_ids = [s.id for s in data]
        self.public_subnet_ids = [s.id for s in public]

        nat = None
        if args.egress_mode == "nat":
            nat = aws.ec2.NatGateway(f"{name}-nat", availability_mode="regional",
                                     connectivity_type="public", vpc_id=vpc.id,
                                     opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))

        private_tables = []
        for i, subnet in enumerate(app):
            routes = ([aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0",
                                                   nat_gateway_id=nat.id)] if nat else [])
            table = aws.ec2.RouteTable(f"{name}-app-rt-{i}", vpc_id=vpc.id, routes=routes,
                                       opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-app-rta-{i}", subnet_id=subnet.id,
                                          route_table_id=table.id, opts=child)
            private_tables.append(table)
        data_table = aws.ec2.RouteTable(f"{name}-data-rt", vpc_id=vpc.id, routes=[],
                                        opts=child)
        for i, subnet in enumerate(data):
            aws.ec2.RouteTableAssociation(f"{name}-data-rta-{i}", subnet_id=subnet.id,
                                          route_table_id=data_table.id, opts=child)
        if public:
            table = aws.ec2.RouteTable(
                f"{name}-public-rt", vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
                opts=child)
            for i, subnet in enumerate(public):
                aws.ec2.RouteTableAssociation(f"{name}-public-rta-{i}", subnet_id=subnet.id,
                                              route_table_id=table.id, opts=child)

        # S3 gateway endpoint on every private route table (free; keeps S3 traffic private).
        s3 = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
            service_name=args.ctx.region.apply(lambda r: f"com.amazonaws.{r}.s3"),
            route_table_ids=[t.id for t in [*private_tables, data_table]],
            policy=iam.to_json(s3_endpoint_policy(args.ctx)), opts=child)
        self.s3_endpoint_id = s3.id

        self.endpoint_security_group_id = None
        #: interface endpoints by service (``ssm``, ``sts``...)
        self.endpoints: dict[str, aws.ec2.VpcEndpoint] = {}
        endpoints = interface_endpoints(args.egress_mode, args.admin_access)
        if endpoints:
            sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints-sg", vpc_id=vpc.id,
                description="Interface VPC endpoints: HTTPS from inside the VPC only",
                ingress=[aws.ec2.SecurityGroupIngressArgs(
                    description="HTTPS from the VPC", protocol="tcp", from_port=443,
                    to_port=443, cidr_blocks=[args.cidr])],
                egress=[], opts=child)
            self.endpoint_security_group_id = sg.id
            for svc in endpoints:
                self.endpoints[svc] = aws.ec2.VpcEndpoint(
                    f"{name}-{svc.replace('.', '-')}", vpc_id=vpc.id,
                    vpc_endpoint_type="Interface",
                    service_name=args.ctx.region.apply(lambda r, s=svc: f"com.amazonaws.{r}.{s}"),
                    subnet_ids=self.app_subnet_ids, security_group_ids=[sg.id],
                    private_dns_enabled=True, opts=child)

        self._flow_logs(name, vpc, args)
        self.register_outputs({"vpc_id": self.vpc_id, "app_subnet_ids": self.app_subnet_ids,
                               "data_subnet_ids": self.data_subnet_ids,
                               "public_subnet_ids": self.public_subnet_ids,
                               "s3_endpoint_id": self.s3_endpoint_id})

    def _flow_logs(self, name: str, vpc: aws.ec2.Vpc, args: NetworkArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs", name=f"/labelstack/{pulumi.get_stack()}/vpc-flow-logs",
            kms_key_id=args.logs_key_arn, retention_in_days=args.log_retention_days,
            opts=child)
        source = args.ctx.arn("ec2", "vpc-flow-log/*")
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            description="VPC flow logs delivery to CloudWatch Logs",
            assume_role_policy=iam.to_json(iam.assume_role_for_service(
                "vpc-flow-logs.amazonaws.com", args.ctx, source)),
            opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs-policy", role=role.id,
                           policy=iam.to_json(iam.log_delivery(group.arn)), opts=child)
        aws.ec2.FlowLog(f"{name}-flow-log", vpc_id=vpc.id, traffic_type="ALL",
                        log_destination_type="cloud-watch-logs", log_destination=group.arn,
                        iam_role_arn=role.arn, max_aggregation_interval=60, opts=child)
