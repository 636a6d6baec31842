"""Audit trail: a multi-region CloudTrail with log file validation, KMS encryption, delivery
to the audit bucket and to a KMS-encrypted CloudWatch log group, S3 data events (every
object read and write) on the source and annotation buckets, and a KMS-encrypted SNS topic told
of every log file delivery (subscribe a queue or an alerting tool to it; only this trail may
publish to it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.iam_documents import AwsContext


def trail_name() -> str:
    """The trail's fixed name (the audit bucket policy pins its ARN before it exists)."""
    return f"labelstack-{pulumi.get_stack()}"


def trail_arn(ctx: AwsContext) -> pulumi.Output[str]:
    """ARN of the stack's trail."""
    return ctx.arn("cloudtrail", f"trail/{trail_name()}")


def topic_name() -> str:
    """The delivery-notification topic's fixed name (the logs key policy pins its ARN)."""
    return f"labelstack-{pulumi.get_stack()}-trail-deliveries"


def topic_arn(ctx: AwsContext) -> pulumi.Output[str]:
    """ARN of the delivery-notification topic."""
    return ctx.arn("sns", topic_name())


def topic_policy(ctx: AwsContext, topic: pulumi.Input[str]) -> dict:
    """Only this stack's trail publishes (``aws:SourceArn``), and only over TLS."""
    return iam.document(
        {"Sid": "CloudTrailOfThisStackPublishes", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "SNS:Publish",
         "Resource": topic,
         "Condition": {"StringEquals": {"aws:SourceArn": trail_arn(ctx),
                                        "aws:SourceAccount": ctx.account_id}}},
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "SNS:*",
         "Resource": topic, "Condition": {"Bool": {"aws:SecureTransport": "false"}}})


@dataclass
class AuditArgs:
    """Inputs of :class:`Audit`."""

    ctx: AwsContext
    bucket: pulumi.Input[str]  # audit bucket name
    bucket_policy: pulumi.Resource  # CloudTrail checks it on create
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    #: Buckets whose object-level reads and writes are recorded (source + annotations).
    data_event_bucket_arns: list[pulumi.Input[str]]


class Audit(pulumi.ComponentResource):
    """CloudTrail, its CloudWatch log group and its delivery-notification topic."""

    trail: aws.cloudtrail.Trail
    log_group: aws.cloudwatch.LogGroup
    topic: aws.sns.Topic

    def __init__(self, name: str, args: AuditArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:data:Audit", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.ctx
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-trail-logs", name=f"/labelstack/{pulumi.get_stack()}/cloudtrail",
            kms_key_id=args.logs_key_arn, retention_in_days=args.log_retention_days,
            opts=child)
        role = aws.iam.Role(
            f"{name}-trail-role", description="CloudTrail delivery to CloudWatch Logs",
            assume_role_policy=iam.to_json(iam.assume_role_for_service(
                "cloudtrail.amazonaws.com", ctx, trail_arn(ctx))), opts=child)
        policy = aws.iam.RolePolicy(f"{name}-trail-policy", role=role.id,
                                    policy=iam.to_json(iam.log_delivery(self.log_group.arn)),
                                    opts=child)
        self.topic = aws.sns.Topic(f"{name}-trail-deliveries", name=topic_name(),
                                   kms_master_key_id=args.logs_key_arn, opts=child)
        topic_access = aws.sns.TopicPolicy(
            f"{name}-trail-deliveries-policy", arn=self.topic.arn,
            policy=iam.to_json(topic_policy(ctx, self.topic.arn)), opts=child)
        objects = [pulumi.Output.from_input(a).apply(lambda x: f"{x}/")
                   for a in args.data_event_bucket_arns]
        self.trail = aws.cloudtrail.Trail(
            f"{name}-trail", name=trail_name(), s3_bucket_name=args.bucket,
            is_multi_region_trail=True, include_global_service_events=True,
            enable_log_file_validation=True, enable_logging=True, kms_key_id=args.logs_key_arn,
            cloud_watch_logs_group_arn=self.log_group.arn.apply(lambda a: f"{a}:*"),
            cloud_watch_logs_role_arn=role.arn, sns_topic_name=self.topic.arn,
            advanced_event_selectors=[
                {"name": "Management events",
                 "field_selectors": [{"field": "eventCategory", "equals": ["Management"]}]},
                {"name": "S3 object events on source and annotation buckets",
                 "field_selectors": [
                     {"field": "eventCategory", "equals": ["Data"]},
                     {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                     {"field": "resources.ARN", "starts_withs": objects}]}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.bucket_policy, policy,
                                                                 topic_access]))
        self.register_outputs({"trail_arn": self.trail.arn,
                               "log_group_arn": self.log_group.arn,
                               "topic_arn": self.topic.arn})
