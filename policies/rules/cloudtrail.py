"""CloudTrail: encrypted, validated, multi-region trails that announce their deliveries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import HIGH, MEDIUM, Rule

TRAIL = ("aws:cloudtrail/trail:Trail",)


def check_validation(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("enableLogFileValidation") is not True:
        yield "enableLogFileValidation is not true"


def check_kms(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("kmsKeyId"):
        yield "the trail's log files are not encrypted with a KMS key (kmsKeyId)"


def check_logging(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("enableLogging") is False:
        yield "enableLogging is false: the trail records nothing"


def check_global_events(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("includeGlobalServiceEvents") is False:
        yield "includeGlobalServiceEvents is false (IAM and STS events are lost)"


def check_cloudwatch(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("cloudWatchLogsGroupArn"):
        yield "the trail does not deliver to CloudWatch Logs (cloudWatchLogsGroupArn)"


def check_notifications(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("snsTopicName"):
        yield "the trail notifies no SNS topic of log file deliveries (snsTopicName)"


_S = "cloudtrail"
RULES = [
    Rule("cloudtrail-log-validation", "CloudTrail log files carry integrity digests.", _S,
         MEDIUM, "164.312(c)(2)", "AWS Config cloud-trail-log-file-validation-enabled",
         "Set enableLogFileValidation true.", check_validation, types=TRAIL),
    Rule("cloudtrail-kms", "CloudTrail log files are encrypted with a customer-managed key.",
         _S, HIGH, "164.312(a)(2)(iv)", "AWS Config cloud-trail-encryption-enabled",
         "Set kmsKeyId to the logs key.", check_kms, types=TRAIL),
    Rule("cloudtrail-enabled", "Declared trails record events.", _S, HIGH, "164.312(b)",
         "AWS Config cloudtrail-enabled", "Set enableLogging true (or leave it unset).",
         check_logging, types=TRAIL),
    Rule("cloudtrail-global-events", "Trails record global service (IAM, STS) events.", _S,
         MEDIUM, "164.312(b)",
         "AWS Config multi-region-cloudtrail-enabled (includeGlobalServiceEvents)",
         "Leave includeGlobalServiceEvents true.", check_global_events, types=TRAIL),
    Rule("cloudtrail-cloudwatch", "Trails deliver to CloudWatch Logs for alerting.", _S,
         MEDIUM, "164.308(a)(1)(ii)(D)", "AWS Config cloud-trail-cloud-watch-logs-enabled",
         "Set cloudWatchLogsGroupArn and cloudWatchLogsRoleArn.", check_cloudwatch,
         types=TRAIL),
    Rule("cloudtrail-sns-notifications", "Trails announce every log file delivery on an SNS "
         "topic (for alerting on delivery gaps).", _S, MEDIUM, "164.308(a)(1)(ii)(D)",
         "checkov CKV_AWS_252", "Set snsTopicName to a KMS-encrypted topic whose policy lets "
         "only this trail publish (aws:SourceArn).", check_notifications, types=TRAIL),
]
