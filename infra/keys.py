"""Customer-managed KMS keys by purpose: ``data`` (buckets), ``logs`` (CloudWatch Logs and
CloudTrail) and ``cluster`` (EKS secrets envelope encryption).

Each key has rotation on and an explicit key policy: the account root statement (which lets
IAM policies in this account grant use of the key; no wildcard principal anywhere) plus
service principals scoped by ``aws:SourceAccount`` and encryption context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.audit import topic_arn
from infra.iam_documents import AwsContext

#: KMS waiting period before a scheduled deletion takes effect (days).
DELETION_WINDOW_DAYS = 30
#: Rotation period (days); 365 is the AWS default and the HIPAA-aligned baseline.
ROTATION_PERIOD_DAYS = 365


@dataclass
class KeysArgs:
    """Inputs of :class:`Keys`."""

    ctx: AwsContext
    #: prod: keys are protected and retained (data encrypted with them must stay readable).
    protect: bool = False
    #: Days before a scheduled key deletion (7 to 30); the longest by default.
    deletion_window_days: int = DELETION_WINDOW_DAYS


def root_statement(ctx: AwsContext) -> dict[str, Any]:
    """Account administration of the key, delegated to IAM in this account only."""
    return {"Sid": "AccountAdministersKeyThroughIam", "Effect": "Allow",
            "Principal": {"AWS": ctx.root_arn()}, "Action": "kms:*", "Resource": "*"}


def data_key_policy(ctx: AwsContext) -> dict[str, Any]:
    """Data key: no service principal; workload roles get use through their IAM policies,
    which pin ``kms:ViaService`` to S3 (see :mod:`infra.identity`)."""
    return iam.document(root_statement(ctx))


def logs_key_policy(ctx: AwsContext) -> dict[str, Any]:
    """Logs key: CloudWatch Logs for this account's log groups, CloudTrail for its trails and
    for publishing to the stack's encrypted delivery-notification topic."""
    log_groups = ctx.arn("logs", "log-group:*")
    trails = pulumi.Output.all(ctx.partition, ctx.account_id).apply(
        lambda a: f"arn:{a[0]}:cloudtrail:*:{a[1]}:trail/*")
    return iam.document(
        root_statement(ctx),
        {"Sid": "CloudWatchLogsForThisAccount", "Effect": "Allow",
         "Principal": {"Service": ctx.service("logs.{region}")},
         "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                    "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext"],
         "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:aws:logs:arn": log_groups},
                       "StringEquals": {"aws:SourceAccount": ctx.account_id}}},
        {"Sid": "CloudWatchLogsDescribesKey", "Effect": "Allow",
         "Principal": {"Service": ctx.service("logs.{region}")},
         "Action": "kms:DescribeKey", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}}},
        {"Sid": "CloudTrailEncryptsForThisAccount", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "kms:GenerateDataKey", "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": trails},
                       "StringEquals": {"aws:SourceAccount": ctx.account_id}}},
        {"Sid": "CloudTrailPublishesToItsEncryptedTopic", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*",
         # SNS puts the topic ARN in the encryption context; no aws:Source* key: CloudTrail's
         # guide names none for this call, and a key absent from the request would drop
         # every notification silently
         "Condition": {"StringEquals": {
             "kms:EncryptionContext:aws:sns:topicArn": topic_arn(ctx)}}},
        {"Sid": "CloudTrailDescribesKey", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"},
         "Action": "kms:DescribeKey", "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id}}},
    )


def cluster_key_policy(ctx: AwsContext) -> dict[str, Any]:
    """Cluster key: no service principal; the EKS cluster role gets use through IAM."""
    return iam.document(root_statement(ctx))


class Keys(pulumi.ComponentResource):
    """The stack's three customer-managed keys (attributes ``data``, ``logs``, ``cluster``)."""

    data: aws.kms.Key
    logs: aws.kms.Key
    cluster: aws.kms.Key

    def __init__(self, name: str, args: KeysArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:data:Keys", name, None, opts)
        policies = {"data": (data_key_policy, "S3 data buckets (source images, annotations, "
                             "models)"),
                    "logs": (logs_key_policy, "CloudWatch Logs and CloudTrail"),
                    "cluster": (cluster_key_policy, "EKS Kubernetes secrets")}
        child = pulumi.ResourceOptions(parent=self, protect=args.protect,
                                       retain_on_delete=args.protect)
        for purpose, (policy, what) in policies.items():
            key = aws.kms.Key(
                f"{name}-{purpose}",
                description=f"labelstack {pulumi.get_stack()}: {what}",
                key_usage="ENCRYPT_DECRYPT",
                customer_master_key_spec="SYMMETRIC_DEFAULT",
                enable_key_rotation=True,
                rotation_period_in_days=ROTATION_PERIOD_DAYS,
                deletion_window_in_days=args.deletion_window_days,
                bypass_policy_lockout_safety_check=False,
                policy=iam.to_json(policy(args.ctx)),
                opts=child)
            aws.kms.Alias(f"{name}-{purpose}-alias",
                          name=f"alias/labelstack-{pulumi.get_stack()}-{purpose}",
                          target_key_id=key.key_id, opts=pulumi.ResourceOptions(parent=self))
            setattr(self, purpose, key)
        self.register_outputs({"data_key_arn": self.data.arn, "logs_key_arn": self.logs.arn,
                               "cluster_key_arn": self.cluster.arn})
