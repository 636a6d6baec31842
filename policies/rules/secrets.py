"""Secrets Manager: customer-managed keys, recoverable deletes, no public policies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import CRITICAL, MEDIUM, Rule
from policies.rules._util import (
    environment,
    label,
    open_to_anyone,
    statements,
    strict,
)

SECRET = ("aws:secretsmanager/secret:Secret",)
SECRET_POLICY = ("aws:secretsmanager/secretPolicy:SecretPolicy",)


def check_cmk(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("kmsKeyId"):
        yield "the secret is encrypted with the AWS managed key, not a kmsKeyId"


def check_recovery(props: Mapping[str, Any]) -> Iterator[str]:
    if strict(props) and props.get("recoveryWindowInDays") == 0:
        yield f"recoveryWindowInDays is 0 in a {environment(props)} stack (deleted at once)"


def check_policy(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(props.get("policy")):
        if open_to_anyone(s):
            yield f"secret policy {label(s)} allows Principal '*'"


_S = "secretsmanager"
RULES = [
    Rule("secrets-cmk", "Secrets are encrypted with a customer-managed KMS key.", _S, MEDIUM,
         "164.312(a)(2)(iv)", "AWS Config secretsmanager-using-cmk",
         "Set kmsKeyId on the secret.", check_cmk, types=SECRET),
    Rule("secrets-recovery-window", "prod and staging secrets can be recovered after "
         "deletion.", _S, MEDIUM, "164.308(a)(7)(ii)(A)",
         "custom (Secrets Manager recovery window)", "Leave recoveryWindowInDays at 7 to 30.",
         check_recovery, types=SECRET),
    Rule("secrets-not-public", "Secret resource policies never allow Principal '*'.", _S,
         CRITICAL, "164.312(a)(1)", "custom (secret resource policy: no anonymous principal)",
         "Name the roles that read the secret.", check_policy, types=SECRET_POLICY),
]
