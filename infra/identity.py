"""Workload identity (IRSA): one IAM role per workload, assumable only by its own Kubernetes
service account (trust pins ``<issuer>:sub`` and ``<issuer>:aud``).

* Label Studio: get + list the source buckets within the configured prefixes, list + put
  (never delete, never read back) under the annotations prefix, KMS only through S3 on
  the data key.
* SAM2 backend: get + list the model bucket, KMS decrypt only through S3.

No ``*`` action and no ``*`` resource anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.iam_documents import AwsContext

#: Kubernetes service accounts the roles trust (the Helm releases must use these names).
LABEL_STUDIO_SERVICE_ACCOUNT = "label-studio"
SAM2_SERVICE_ACCOUNT = "sam2-backend"
#: Longest session a workload token buys (STS default for web identity).
MAX_SESSION_SECONDS = 3600


@dataclass
class WorkloadIdentityArgs:
    """Inputs of :class:`WorkloadIdentity`."""

    ctx: AwsContext
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]  # https://oidc.eks.<region>.amazonaws.com/id/<id>
    namespace: str
    source_bucket_arns: Sequence[pulumi.Input[str]]
    source_prefixes: Sequence[str]
    annotations_bucket_arn: pulumi.Input[str]
    annotations_prefix: str
    models_bucket_arn: pulumi.Input[str]
    data_key_arn: pulumi.Input[str]


def _kms_via_s3(ctx: AwsContext, key_arn: pulumi.Input[str], actions: list[str]
                ) -> dict[str, Any]:
    return {"Sid": "DataKeyThroughS3Only", "Effect": "Allow", "Action": actions,
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": ctx.service("s3.{region}")}}}


def _under(arn: pulumi.Input[str], prefix: str) -> pulumi.Output[str]:
    return pulumi.Output.from_input(arn).apply(lambda a: f"{a}/{prefix}*")


def label_studio_policy(args: WorkloadIdentityArgs) -> dict[str, Any]:
    """Read sources within their prefixes; write exports under the annotations prefix."""
    prefixes = [f"{p}*" for p in args.source_prefixes]
    return iam.document(
        {"Sid": "ListSourcePrefixes", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": list(args.source_bucket_arns),
         "Condition": {"StringLike": {"s3:prefix": prefixes}}},
        {"Sid": "ReadSourceObjects", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [_under(b, p) for b in args.source_bucket_arns
                      for p in args.source_prefixes]},
        {"Sid": "ListAnnotationsPrefix", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": args.annotations_bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": f"{args.annotations_prefix}*"}}},
        {"Sid": "WriteAnnotations", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": _under(args.annotations_bucket_arn, args.annotations_prefix)},
        _kms_via_s3(args.ctx, args.data_key_arn, ["kms:Decrypt", "kms:GenerateDataKey"]),
    )


def sam2_policy(args: WorkloadIdentityArgs) -> dict[str, Any]:
    """Read the model bucket, nothing else."""
    return iam.document(
        {"Sid": "ListModels", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": args.models_bucket_arn},
        {"Sid": "ReadModels", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": _under(args.models_bucket_arn, "")},
        _kms_via_s3(args.ctx, args.data_key_arn, ["kms:Decrypt"]),
    )


class WorkloadIdentity(pulumi.ComponentResource):
    """IRSA roles: ``label_studio`` and ``sam2``."""

    label_studio: aws.iam.Role
    sam2: aws.iam.Role

    def __init__(self, name: str, args: WorkloadIdentityArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:identity:WorkloadIdentity", name, None, opts)
        self.label_studio = self._role(f"{name}-label-studio", args,
                                       LABEL_STUDIO_SERVICE_ACCOUNT, label_studio_policy(args))
        self.sam2 = self._role(f"{name}-sam2", args, SAM2_SERVICE_ACCOUNT, sam2_policy(args))
        self.register_outputs({"label_studio_role_arn": self.label_studio.arn,
                               "sam2_role_arn": self.sam2.arn})

    def _role(self, name: str, args: WorkloadIdentityArgs, service_account: str,
              policy: dict[str, Any]) -> aws.iam.Role:
        role, _ = irsa_role(name, parent=self, namespace=args.namespace,
                            service_account=service_account,
                            oidc_provider_arn=args.oidc_provider_arn,
                            oidc_issuer_url=args.oidc_issuer_url, policy=policy)
        return role


def irsa_role(name: str, *, parent: pulumi.Resource, namespace: str, service_account: str,
              oidc_provider_arn: pulumi.Input[str], oidc_issuer_url: pulumi.Input[str],
              policy: dict[str, Any], description: str | None = None,
              ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """An IRSA role only ``namespace/service_account`` can assume, and its one inline policy
    (named like the role, ``-role`` replaced by ``-policy``)."""
    child = pulumi.ResourceOptions(parent=parent)
    role = aws.iam.Role(
        name, description=description or f"IRSA: {namespace}/{service_account}",
        assume_role_policy=iam.to_json(iam.irsa_trust(
            oidc_provider_arn, oidc_issuer_url, namespace, service_account)),
        max_session_duration=MAX_SESSION_SECONDS,
        tags={"ServiceAccount": f"{namespace}/{service_account}"}, opts=child)
    role_policy = aws.iam.RolePolicy(f"{name.removesuffix('-role')}-policy", role=role.id,
                                     policy=iam.to_json(policy), opts=child)
    return role, role_policy
