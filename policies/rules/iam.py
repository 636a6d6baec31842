"""IAM: least-privilege identity policies and tight role trust."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any

from policies.model import CRITICAL, HIGH, MEDIUM, Rule
from policies.rules._util import (
    actions,
    allows,
    label,
    open_to_anyone,
    resources,
    statements,
)

POLICIES = ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy",
            "aws:iam/userPolicy:UserPolicy", "aws:iam/groupPolicy:GroupPolicy")
ROLE = ("aws:iam/role:Role",)
ATTACHMENTS = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
               "aws:iam/userPolicyAttachment:UserPolicyAttachment",
               "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
               "aws:iam/policyAttachment:PolicyAttachment")
USER_GRANTS = ("aws:iam/userPolicy:UserPolicy",
               "aws:iam/userPolicyAttachment:UserPolicyAttachment")
ACCESS_KEY = ("aws:iam/accessKey:AccessKey",)
ADMIN_POLICIES = ("AdministratorAccess", "PowerUserAccess", "IAMFullAccess",
                  "AmazonS3FullAccess", "AWSKeyManagementServicePowerUser")
#: Actions that read or write PHI or unwrap its keys; they must name their resources.
DATA_ACTIONS = ("s3:getobject", "s3:getobjectversion", "s3:putobject", "s3:deleteobject",
                "kms:decrypt", "kms:encrypt", "kms:generatedatakey",
                "secretsmanager:getsecretvalue")


def _policy(props: Mapping[str, Any]) -> Any:
    return props.get("policy")


def check_wildcard_action(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(_policy(props)):
        if not allows(s):
            continue
        wild = [a for a in actions(s) if a == "*" or a.endswith(":*")]
        if wild:
            yield f"{label(s)} allows wildcard action {', '.join(wild)}"


def check_admin(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(_policy(props)):
        if allows(s) and "*" in actions(s) and "*" in resources(s):
            yield f"{label(s)} grants Action '*' on Resource '*' (full administrator)"


def check_data_resources(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(_policy(props)):
        if not allows(s) or "*" not in resources(s):
            continue
        data = [a for a in actions(s)
                if any(fnmatchcase(d, a.lower()) for d in DATA_ACTIONS)]
        if data:
            yield f"{label(s)} allows {', '.join(data)} on Resource '*'"


def check_passrole(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(_policy(props)):
        acts = [a.lower() for a in actions(s)]
        if allows(s) and ("iam:passrole" in acts or "iam:*" in acts) and "*" in resources(s):
            yield f"{label(s)} allows iam:PassRole on Resource '*'"


def check_managed_admin(props: Mapping[str, Any]) -> Iterator[str]:
    arn = str(props.get("policyArn") or "")
    if arn.rsplit("/", 1)[-1] in ADMIN_POLICIES and ":aws:policy/" in arn:
        yield f"attaches AWS managed policy {arn.rsplit('/', 1)[-1]}"


def check_user_policy(props: Mapping[str, Any]) -> Iterator[str]:
    yield (f"grants permissions directly to IAM user {props.get('user', '?')}; use roles "
           "(SSO or workload identity)")


def check_access_key(props: Mapping[str, Any]) -> Iterator[str]:
    yield f"creates a long-lived access key for IAM user {props.get('user', '?')}"


def check_trust_wildcard(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(props.get("assumeRolePolicy")):
        if open_to_anyone(s):
            yield f"trust policy {label(s)} lets any principal ('*') assume the role"


def check_web_identity_subject(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(props.get("assumeRolePolicy")):
        if not allows(s) or "sts:AssumeRoleWithWebIdentity" not in actions(s):
            continue
        keys = [k for op in (s.get("Condition") or {}).values() if isinstance(op, Mapping)
                for k in op]
        sub = [k for k in keys if str(k).endswith(":sub")]
        if not sub:
            yield (f"trust policy {label(s)} accepts web identities without pinning the "
                   ":sub claim (any service account could assume the role)")


_S = "iam"
RULES = [
    Rule("iam-no-wildcard-action", "IAM policies name their actions: no '*' or 'service:*'.",
         _S, HIGH, "164.308(a)(4)(ii)(B)", "checkov CKV_AWS_63 / CKV_AWS_49",
         "List the exact actions the workload needs.", check_wildcard_action, types=POLICIES),
    Rule("iam-no-admin-statements", "IAM policies never grant '*' on '*'.", _S, CRITICAL,
         "164.308(a)(3)(i)",
         "AWS Config iam-policy-no-statements-with-admin-access / checkov CKV_AWS_62",
         "Replace the statement with the actions and resources the workload needs.",
         check_admin, types=POLICIES),
    Rule("iam-data-actions-scoped", "IAM statements that read or write PHI (S3 objects, KMS "
         "decrypt, secret values) name their resources.", _S, HIGH, "164.312(a)(1)",
         "checkov CKV_AWS_111 / CKV_AWS_356", "Replace Resource '*' with the bucket, key or "
         "secret ARNs.", check_data_resources, types=POLICIES),
    Rule("iam-no-passrole-wildcard", "iam:PassRole is scoped to named roles.", _S, HIGH,
         "164.308(a)(4)(ii)(B)", "checkov CKV_AWS_286", "Scope iam:PassRole to the role ARNs "
         "the service needs.", check_passrole, types=POLICIES),
    Rule("iam-no-managed-admin-policy", "No AWS managed administrator or full-access policy is "
         "attached.", _S, CRITICAL, "164.308(a)(3)(i)",
         "checkov CKV_AWS_274",
         "Attach a customer-managed least-privilege policy instead.", check_managed_admin,
         types=ATTACHMENTS),
    Rule("iam-no-user-policies", "Permissions go to roles, never directly to IAM users.", _S,
         MEDIUM, "164.308(a)(4)(ii)(B)", "AWS Config iam-user-no-policies-check",
         "Grant the permissions to a role assumed through SSO or workload identity.",
         check_user_policy, types=USER_GRANTS),
    Rule("iam-no-access-keys", "The stack creates no long-lived IAM access keys.", _S, HIGH,
         "164.312(d)", "AWS Config access-keys-rotated", "Use roles (IRSA / Pod Identity, SSO) "
         "instead of access keys.", check_access_key, types=ACCESS_KEY),
    Rule("iam-trust-no-public-principal", "Role trust policies never trust '*' without a "
         "condition.", _S, CRITICAL, "164.312(d)", "checkov CKV_AWS_60 / CKV_AWS_61",
         "Name the trusted account, service or OIDC provider.", check_trust_wildcard,
         types=ROLE),
    Rule("iam-web-identity-subject-pinned", "Roles assumed with web identity (IRSA) pin the "
         "service account (:sub), not only the audience.", _S, HIGH, "164.312(d)",
         "custom (IRSA trust pinned to a service account; cf. checkov CKV_AWS_358)",
         "Add StringEquals "
         "<issuer>:sub system:serviceaccount:<namespace>:<name> to the trust condition.",
         check_web_identity_subject, types=ROLE),
]
