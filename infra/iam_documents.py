"""IAM policy documents as plain Python dicts (rendered to JSON with ``Output.json_dumps``).

Every document the data plane attaches is built here, so tests and the policy pack can read
them in one place. Values may be Pulumi Inputs; :func:`to_json` resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

VERSION = "2012-10-17"
Statement = dict[str, Any]


@dataclass(frozen=True)
class AwsContext:
    """Account, region and partition of the stack (data-source calls, made once)."""

    account_id: pulumi.Output[str]
    region: pulumi.Output[str]
    partition: pulumi.Output[str]
    dns_suffix: pulumi.Output[str]

    @staticmethod
    def lookup() -> AwsContext:
        """Ask the provider who and where we are (getCallerIdentity/getRegion/getPartition)."""
        ident = aws.get_caller_identity_output()
        region = aws.get_region_output()
        part = aws.get_partition_output()
        return AwsContext(ident.account_id, region.region, part.partition, part.dns_suffix)

    def root_arn(self) -> pulumi.Output[str]:
        """The account principal ``arn:<partition>:iam::<account>:root``."""
        return pulumi.Output.format("arn:{0}:iam::{1}:root", self.partition, self.account_id)

    def service(self, name: str) -> pulumi.Output[str]:
        """Service principal, e.g. ``logs.us-east-1.amazonaws.com`` for ``name="logs.{region}"``."""
        return pulumi.Output.all(self.region, self.dns_suffix).apply(
            lambda a: f"{name.format(region=a[0])}.{a[1]}")

    def arn(self, service: str, resource: str, *, regional: bool = True) -> pulumi.Output[str]:
        """``arn:<partition>:<service>:<region>:<account>:<resource>``."""
        return pulumi.Output.all(self.partition, self.region, self.account_id).apply(
            lambda a: f"arn:{a[0]}:{service}:{a[1] if regional else ''}:{a[2]}:{resource}")


def document(*statements: Statement) -> dict[str, Any]:
    """A policy document from statements (``None`` entries are dropped)."""
    return {"Version": VERSION, "Statement": [s for s in statements if s]}


def to_json(doc: dict[str, Any]) -> pulumi.Output[str]:
    """Render a document holding Inputs to a JSON string Output."""
    return pulumi.Output.json_dumps(doc)


def assume_role_for_service(service: pulumi.Input[str], ctx: AwsContext,
                            source_arn: pulumi.Input[str] | None = None) -> dict[str, Any]:
    """Trust policy for an AWS service, scoped to this account (confused-deputy guard)."""
    cond: dict[str, Any] = {"StringEquals": {"aws:SourceAccount": ctx.account_id}}
    if source_arn is not None:
        cond["ArnLike"] = {"aws:SourceArn": source_arn}
    return document({"Sid": "AssumeFromService", "Effect": "Allow",
                     "Principal": {"Service": service}, "Action": "sts:AssumeRole",
                     "Condition": cond})


def irsa_trust(oidc_provider_arn: pulumi.Input[str], oidc_issuer_url: pulumi.Input[str],
               namespace: str, service_account: str) -> dict[str, Any]:
    """Trust policy for IRSA: only ``system:serviceaccount:<ns>:<sa>`` with audience STS."""
    host = pulumi.Output.from_input(oidc_issuer_url).apply(
        lambda u: u.removeprefix("https://").rstrip("/"))
    sub = host.apply(lambda h: f"{h}:sub")
    aud = host.apply(lambda h: f"{h}:aud")
    cond = pulumi.Output.all(sub, aud).apply(lambda k: {"StringEquals": {
        k[0]: f"system:serviceaccount:{namespace}:{service_account}",
        k[1]: "sts.amazonaws.com"}})
    return document({"Sid": "AssumeFromServiceAccount", "Effect": "Allow",
                     "Principal": {"Federated": oidc_provider_arn},
                     "Action": "sts:AssumeRoleWithWebIdentity", "Condition": cond})


def log_delivery(log_group_arn: pulumi.Input[str]) -> dict[str, Any]:
    """Write access to one CloudWatch log group (its streams)."""
    streams = pulumi.Output.from_input(log_group_arn).apply(lambda a: f"{a}:log-stream:*")
    return document(
        {"Sid": "WriteLogStreams", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": streams},
        {"Sid": "DescribeLogStreams", "Effect": "Allow", "Action": "logs:DescribeLogStreams",
         "Resource": pulumi.Output.from_input(log_group_arn).apply(lambda a: f"{a}:*")},
    )
