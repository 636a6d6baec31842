"""CloudWatch Logs: encrypted, retained for the profile's floor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import MEDIUM, Rule
from policies.rules._util import environment

LOG_GROUP = ("aws:cloudwatch/logGroup:LogGroup",)
#: Minimum retention (days) per Environment tag; the AWS Config rule's default is 365.
FLOORS = {"prod": 365, "staging": 90, "dev": 30, "ephemeral": 7}


def check_retention(props: Mapping[str, Any]) -> Iterator[str]:
    days = int(props.get("retentionInDays") or 0)
    floor = FLOORS.get(environment(props), 365)
    if days == 0:
        yield "retentionInDays is unset (logs kept forever, unmanaged)"
    elif days < floor:
        yield (f"retentionInDays is {days}; {environment(props) or 'untagged'} stacks keep "
               f"logs at least {floor} days")


def check_kms(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("kmsKeyId"):
        yield "the log group is not encrypted with a customer-managed key (kmsKeyId)"


_S = "logs"
RULES = [
    Rule("logs-retention", "Log groups keep logs for the profile's floor (365 days in prod).",
         _S, MEDIUM, "164.312(b)", "AWS Config cw-loggroup-retention-period-check",
         "Set retentionInDays (logRetentionDays) to the floor or more.", check_retention,
         types=LOG_GROUP),
    Rule("logs-kms", "Log groups are encrypted with a customer-managed key.", _S, MEDIUM,
         "164.312(a)(2)(iv)", "AWS Config cloudwatch-log-group-encrypted",
         "Set kmsKeyId to the logs key.", check_kms, types=LOG_GROUP),
]
