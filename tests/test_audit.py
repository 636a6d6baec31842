"""Audit: multi-region CloudTrail with validation, KMS, CloudWatch Logs and S3 data events;
every log group KMS-encrypted with retention (at least 365 days in prod)."""

from __future__ import annotations

import json

from infra.config import PROFILES
from infra.offline import ACCOUNT, Plan

TRAIL = "aws:cloudtrail/trail:Trail"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"


def test_trail_posture(each_stack: Plan) -> None:
    (trail,) = each_stack.of_type(TRAIL)
    i = trail.inputs
    assert i["name"] == f"labelstack-{each_stack.stack}"
    assert i["isMultiRegionTrail"] is True
    assert i["includeGlobalServiceEvents"] is True
    assert i["enableLogFileValidation"] is True
    assert i["enableLogging"] is True
    assert i["kmsKeyId"] == each_stack.outputs["logsKeyArn"]
    assert i["s3BucketName"] == each_stack.outputs["bucketNames"]["audit"]
    group = each_stack.named("audit-trail-logs")
    assert i["cloudWatchLogsGroupArn"] == (
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group.inputs['name']}:*")
    assert i["cloudWatchLogsRoleArn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/audit-trail-role")
    # the trail is created after the bucket policy that lets it write
    assert "audit-policy" in trail.depends_on


def test_data_events_on_source_and_annotation_buckets(each_stack: Plan) -> None:
    (trail,) = each_stack.of_type(TRAIL)
    selectors = {s["name"]: s["fieldSelectors"] for s in trail.inputs["advancedEventSelectors"]}
    assert selectors["Management events"] == [{"field": "eventCategory",
                                               "equals": ["Management"]}]
    data = {f["field"]: f for f in selectors["S3 object events on source and annotation buckets"]}
    assert data["eventCategory"]["equals"] == ["Data"]
    assert data["resources.type"]["equals"] == ["AWS::S3::Object"]
    names = each_stack.outputs["bucketNames"]
    expected = {f"arn:aws:s3:::{v}/" for k, v in names.items()
                if k.startswith("source-") or k == "annotations"}
    assert set(data["resources.ARN"]["startsWiths"]) == expected
    assert "readOnly" not in data  # reads and writes both recorded


def test_audit_bucket_admits_only_this_trail(each_stack: Plan) -> None:
    doc = json.loads(each_stack.named("audit-policy").inputs["policy"])
    stmts = {s["Sid"]: s for s in doc["Statement"]}
    trail_arn = f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/labelstack-{each_stack.stack}"
    assert each_stack.outputs["trailArn"] == trail_arn
    write = stmts["CloudTrailWrite"]
    assert write["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert write["Condition"]["StringEquals"]["aws:SourceArn"] == trail_arn
    assert write["Resource"].endswith(f"/AWSLogs/{ACCOUNT}/*")
    assert stmts["CloudTrailAclCheck"]["Condition"] == {"StringEquals": {
        "aws:SourceArn": trail_arn}}


def test_trail_role_trusts_cloudtrail_for_this_trail_only(each_stack: Plan) -> None:
    (stmt,) = json.loads(each_stack.named("audit-trail-role").inputs["assumeRolePolicy"])[
        "Statement"]
    assert stmt["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert stmt["Condition"]["ArnLike"]["aws:SourceArn"] == each_stack.outputs["trailArn"]


def test_every_log_group_kms_and_retention(each_stack: Plan) -> None:
    floor = PROFILES[each_stack.config["labelstack:profile"]].min_log_retention_days
    groups = each_stack.of_type(LOG_GROUP)
    assert {"network-flow-logs", "audit-trail-logs"} <= {g.name for g in groups}
    for group in groups:
        assert group.inputs["kmsKeyId"] == each_stack.outputs["logsKeyArn"], group.name
        assert group.inputs["retentionInDays"] >= floor, group.name
        if each_stack.stack == "prod":
            assert group.inputs["retentionInDays"] >= 365


def test_trail_notifies_an_encrypted_topic_only_it_may_publish_to(each_stack: Plan) -> None:
    (trail,) = each_stack.of_type(TRAIL)
    (topic,) = each_stack.of_type("aws:sns/topic:Topic")
    assert topic.inputs["name"] == f"labelstack-{each_stack.stack}-trail-deliveries"
    assert topic.inputs["kmsMasterKeyId"] == each_stack.outputs["logsKeyArn"]
    topic_arn = f"arn:aws:sns:us-east-1:{ACCOUNT}:{topic.inputs['name']}"
    assert trail.inputs["snsTopicName"] == topic_arn
    (access,) = each_stack.of_type("aws:sns/topicPolicy:TopicPolicy")
    assert access.inputs["arn"] == topic_arn
    # the trail is created after the policy that lets it publish
    assert "audit-trail-deliveries-policy" in trail.depends_on
    allow, deny = json.loads(access.inputs["policy"])["Statement"]
    assert allow["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert allow["Action"] == "SNS:Publish" and allow["Resource"] == topic_arn
    assert allow["Condition"]["StringEquals"]["aws:SourceArn"] == (
        f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/labelstack-{each_stack.stack}")
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_logs_key_lets_cloudtrail_encrypt_for_its_topic_only(each_stack: Plan) -> None:
    key = each_stack.named("keys-logs")
    (stmt,) = [s for s in json.loads(key.inputs["policy"])["Statement"]
               if s["Sid"] == "CloudTrailPublishesToItsEncryptedTopic"]
    assert stmt["Condition"]["StringEquals"] == {
        "kms:EncryptionContext:aws:sns:topicArn":
            f"arn:aws:sns:us-east-1:{ACCOUNT}:labelstack-{each_stack.stack}-trail-deliveries"}
    assert stmt["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]
