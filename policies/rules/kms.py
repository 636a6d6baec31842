"""KMS: customer-managed keys rotate and are never open to the anonymous principal."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import CRITICAL, HIGH, MEDIUM, Rule
from policies.rules._util import label, open_to_anyone, statements

KEY = ("aws:kms/key:Key",)
MIN_DELETION_WINDOW = 7


def check_rotation(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("enableKeyRotation") is not True:
        yield "enableKeyRotation is not true"


def check_policy_principal(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(props.get("policy")):
        if open_to_anyone(s):
            yield f"key policy {label(s)} allows Principal '*' with no Condition"


def check_lockout(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("bypassPolicyLockoutSafetyCheck") is True:
        yield "bypassPolicyLockoutSafetyCheck is true"


def check_deletion_window(props: Mapping[str, Any]) -> Iterator[str]:
    days = props.get("deletionWindowInDays")
    if days is not None and int(days) < 30 and (props.get("tags") or {}).get(
            "Environment") in ("prod", "staging"):
        yield f"deletionWindowInDays is {days}; prod and staging keys wait 30 days"


_S = "kms"
RULES = [
    Rule("kms-key-rotation", "Customer-managed KMS keys rotate their key material.", _S,
         MEDIUM, "164.312(a)(2)(iv)", "AWS Config cmk-backing-key-rotation-enabled",
         "Set enableKeyRotation true on the key.", check_rotation, types=KEY),
    Rule("kms-key-policy-no-public-principal", "KMS key policies never allow the anonymous "
         "principal '*' without a condition.", _S, CRITICAL, "164.312(a)(1)",
         "checkov CKV_AWS_33", "Grant the account root or named roles, or add a Condition.",
         check_policy_principal, types=KEY),
    Rule("kms-key-lockout-check", "KMS keys keep the policy lockout safety check.", _S, HIGH,
         "164.312(a)(1)", "custom (AWS KMS key policy guidance)", "Remove "
         "bypassPolicyLockoutSafetyCheck (or set it false).", check_lockout, types=KEY),
    Rule("kms-key-deletion-window", "prod and staging KMS keys wait the full 30 days before "
         "a scheduled deletion.", _S, MEDIUM, "164.308(a)(7)(ii)(B)",
         "custom (cf. AWS Config kms-cmk-not-scheduled-for-deletion)",
         "Set deletionWindowInDays to 30.",
         check_deletion_window, types=KEY),
]
