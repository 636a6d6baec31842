"""ECR repositories for the project's own images (SAM2 backend, bootstrap job).

Immutable tags (a tag always means the same image digest), scan on push, encryption with the
CMK, and a lifecycle policy that expires untagged layers and keeps the newest tagged images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

#: Repositories this bundle pushes to (the last segment of each repository name).
REPOSITORIES = ("sam2-backend", "bootstrap")
UNTAGGED_EXPIRY_DAYS = 7
KEEP_TAGGED_IMAGES = 30


def lifecycle_policy(untagged_days: int = UNTAGGED_EXPIRY_DAYS,
                     keep: int = KEEP_TAGGED_IMAGES) -> dict[str, Any]:
    """Expire untagged images after ``untagged_days``; keep the newest ``keep`` images."""
    return {"rules": [
        {"rulePriority": 1, "description": f"expire untagged images after {untagged_days} days",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                       "countUnit": "days", "countNumber": untagged_days},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": f"keep the newest {keep} images",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                       "countNumber": keep},
         "action": {"type": "expire"}},
    ]}


@dataclass
class RegistryArgs:
    """Inputs of :class:`Registry`."""

    #: Repository path prefix, e.g. ``labelstack-prod`` -> ``labelstack-prod/sam2-backend``.
    prefix: str
    #: CMK for image layers.
    key_arn: pulumi.Input[str]
    repositories: Sequence[str] = REPOSITORIES
    #: Delete repositories that still hold images on destroy (ephemeral stacks only).
    force_delete: bool = False


class Registry(pulumi.ComponentResource):
    """One ECR repository (+ lifecycle policy) per image."""

    repositories: dict[str, aws.ecr.Repository]
    urls: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: RegistryArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:compute:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repositories, self.urls = {}, {}
        for repo in args.repositories:
            r = aws.ecr.Repository(
                f"{name}-{repo}", name=f"{args.prefix}/{repo}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                    scan_on_push=True),
                encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS", kms_key=args.key_arn)],
                force_delete=args.force_delete,
                opts=child)
            aws.ecr.LifecyclePolicy(f"{name}-{repo}-lifecycle", repository=r.name,
                                    policy=json.dumps(lifecycle_policy()), opts=child)
            self.repositories[repo] = r
            self.urls[repo] = r.repository_url
        self.register_outputs(dict(self.urls))
