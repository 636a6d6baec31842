"""ECR repositories: immutable tags, scan on push, CMK encryption, lifecycle policy."""

from __future__ import annotations

import json

from infra.offline import Plan
from infra.registry import KEEP_TAGGED_IMAGES, REPOSITORIES, UNTAGGED_EXPIRY_DAYS
from tests.compute_helpers import ECR


def test_one_repository_per_image(each_stack: Plan) -> None:
    names = sorted(r.inputs["name"] for r in each_stack.of_type(ECR))
    assert names == sorted(f"labelstack-{each_stack.stack}/{r}" for r in REPOSITORIES)
    assert set(REPOSITORIES) == {"sam2-backend", "bootstrap"}
    urls = {each_stack.outputs["sam2BackendRepositoryUrl"],
            each_stack.outputs["bootstrapRepositoryUrl"]}
    assert {u.split("/", 1)[1] for u in urls} == set(names)


def test_immutable_scanned_and_encrypted(each_stack: Plan) -> None:
    for repo in each_stack.of_type(ECR):
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["encryptionConfigurations"] == [
            {"encryptionType": "KMS", "kmsKey": each_stack.outputs["dataKeyArn"]}]


def test_lifecycle_policy_per_repository(each_stack: Plan) -> None:
    policies = each_stack.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    repos = {r.inputs["name"] for r in each_stack.of_type(ECR)}
    assert {p.inputs["repository"] for p in policies} == repos
    for p in policies:
        rules = json.loads(p.inputs["policy"])["rules"]
        assert len({r["rulePriority"] for r in rules}) == len(rules)
        untagged = [r for r in rules if r["selection"]["tagStatus"] == "untagged"]
        assert untagged[0]["selection"]["countType"] == "sinceImagePushed"
        assert untagged[0]["selection"]["countNumber"] == UNTAGGED_EXPIRY_DAYS
        kept = [r for r in rules if r["selection"]["countType"] == "imageCountMoreThan"]
        assert kept[0]["selection"]["countNumber"] == KEEP_TAGGED_IMAGES
        # ECR requires tagStatus=any to be the lowest-priority (highest number) rule
        assert max(rules, key=lambda r: r["rulePriority"])["selection"]["tagStatus"] == "any"
        assert all(r["action"] == {"type": "expire"} for r in rules)


def test_only_ephemeral_repositories_are_force_deleted(each_stack: Plan) -> None:
    for repo in each_stack.of_type(ECR):
        assert repo.inputs["forceDelete"] is (each_stack.stack == "ephemeral")
