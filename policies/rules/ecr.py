"""ECR: scanned, immutable, KMS-encrypted, private repositories with lifecycle policies."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from policies.model import CRITICAL, LOW, MEDIUM, Rule, StackView
from policies.rules._util import (
    as_list,
    get,
    label,
    open_to_anyone,
    related,
    statements,
)

REPO = ("aws:ecr/repository:Repository",)
LIFECYCLE = ("aws:ecr/lifecyclePolicy:LifecyclePolicy",)
REPO_POLICY = ("aws:ecr/repositoryPolicy:RepositoryPolicy",)


def check_scan(props: Mapping[str, Any]) -> Iterator[str]:
    if get(props, "imageScanningConfiguration", "scanOnPush") is not True:
        yield "imageScanningConfiguration.scanOnPush is not true"


def check_immutable(props: Mapping[str, Any]) -> Iterator[str]:
    mode = props.get("imageTagMutability") or "MUTABLE"
    if not str(mode).startswith("IMMUTABLE"):
        yield f"imageTagMutability is {mode}; tags can be moved to other images"


def check_kms(props: Mapping[str, Any]) -> Iterator[str]:
    types = [c.get("encryptionType") for c in as_list(props.get("encryptionConfigurations"))]
    if "KMS" not in types:
        yield "images are encrypted with AES256, not a KMS key"


def check_lifecycle(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for repo in view.of_type(*REPO):
        if not related(view, repo, LIFECYCLE, "repository"):
            yield repo, f"repository {repo.props.get('name') or repo.name} has no lifecycle policy"


def check_repo_policy(props: Mapping[str, Any]) -> Iterator[str]:
    for s in statements(props.get("policy")):
        if open_to_anyone(s):
            yield f"repository policy {label(s)} allows Principal '*'"


_S = "ecr"
RULES = [
    Rule("ecr-scan-on-push", "ECR scans images for vulnerabilities on push.", _S, MEDIUM,
         "164.308(a)(5)(ii)(B)", "AWS Config ecr-private-image-scanning-enabled / "
         "checkov CKV_AWS_163", "Set imageScanningConfiguration.scanOnPush true.", check_scan,
         types=REPO),
    Rule("ecr-tag-immutable", "ECR image tags are immutable.", _S, MEDIUM, "164.312(c)(1)",
         "AWS Config ecr-private-tag-immutability-enabled / checkov CKV_AWS_51",
         "Set imageTagMutability IMMUTABLE.", check_immutable, types=REPO),
    Rule("ecr-kms-encrypted", "ECR repositories encrypt images with KMS.", _S, LOW,
         "164.312(a)(2)(iv)", "checkov CKV_AWS_136", "Set encryptionConfigurations "
         "[{encryptionType: KMS, kmsKey: <key>}].", check_kms, types=REPO),
    Rule("ecr-lifecycle-policy", "Every ECR repository has a lifecycle policy.", _S, LOW,
         "164.308(a)(5)(ii)(B)", "AWS Config ecr-private-lifecycle-policy-configured",
         "Add an aws.ecr.LifecyclePolicy expiring untagged images.", check_lifecycle),
    Rule("ecr-not-public", "ECR repository policies never allow Principal '*'.", _S, CRITICAL,
         "164.312(a)(1)", "checkov CKV_AWS_32", "Name the accounts or roles that pull.",
         check_repo_policy, types=REPO_POLICY),
]
