"""S3 buckets, one per purpose, each hardened the same way (pulumi-aws v7 separate resources).

Purposes: ``source-<project>`` (source images of each labeling project), ``annotations``
(exports), ``models`` (SAM2 checkpoints), ``audit`` (CloudTrail) and ``access-logs``
(S3 server access logs of all the others).

Every bucket: all four public-access-block flags, ``BucketOwnerEnforced`` (ACLs off),
versioning, default encryption, a TLS-only policy, lifecycle rules for noncurrent versions
and incomplete multipart uploads. Every bucket but ``access-logs`` also gets SSE-KMS with a
bucket key, a policy denying uploads that name another key or another encryption, and
server access logging. Documented exceptions for ``access-logs``: S3 server access logging
cannot deliver to an SSE-KMS bucket (SSE-S3 instead) and it does not log itself.

The ``access-logs`` bucket also takes the Application Load Balancer's access logs under
``<albLogPrefix>/AWSLogs/<account>/`` (put-only, that prefix only): from Elastic Load
Balancing's regional account in regions opened before August 2022, from the service principal
``logdelivery.elasticloadbalancing.amazonaws.com`` in newer ones. ALB access logs need an
SSE-S3 target bucket, which ``access-logs`` is.

``source-*`` and ``annotations`` also deny data access that does not come through the VPC's
S3 gateway endpoint, except the break-glass role and, with ``imageAccess=presign``, the
annotators' CIDRs; presign mode adds a CORS rule for the Label Studio origin on sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.config import ConfigError
from infra.iam_documents import AwsContext

#: Days a noncurrent object version is kept (undo window for overwrites and deletes).
NONCURRENT_DAYS = {"ephemeral": 7, "dev": 30, "staging": 90, "prod": 365}
#: Days after which an unfinished multipart upload is aborted.
ABORT_MULTIPART_DAYS = 7
#: Object actions the VPC-endpoint-only statement denies outside the endpoint. Bucket
#: configuration calls stay possible from the deployment pipeline (IAM still governs them).
DATA_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                "s3:ListBucket", "s3:ListBucketVersions", "s3:ListMultipartUploadParts",
                "s3:RestoreObject")
#: Elastic Load Balancing's log-delivery account of each region opened before August 2022
#: (AWS ELB guide, "Enable access logs for your Application Load Balancer", step 2).
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-southeast-3": "589379963580", "ap-south-1": "718504428378",
    "ap-northeast-3": "383597477331", "ap-northeast-2": "600734575887",
    "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251",
    "eu-central-1": "054676820928", "eu-west-1": "156460612806", "eu-west-2": "652711504416",
    "eu-south-1": "635631232127", "eu-west-3": "009996457667", "eu-north-1": "897822967062",
    "me-south-1": "076674570225", "sa-east-1": "507241528517",
    "us-gov-west-1": "048591011584", "us-gov-east-1": "190560391635",
    "cn-north-1": "638102146993", "cn-northwest-1": "037604701340",
}
#: Regions opened in or after August 2022: ELB delivers as :data:`ELB_LOG_DELIVERY_SERVICE`.
ELB_LOG_SERVICE_REGIONS = frozenset({
    "ap-south-2", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
    "ap-east-2", "ca-west-1", "eu-south-2", "eu-central-2", "il-central-1", "me-central-1",
    "mx-central-1"})
ELB_LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"


@dataclass
class StorageArgs:
    """Inputs of :class:`Storage`."""

    ctx: AwsContext
    projects: tuple[str, ...]
    data_key_arn: pulumi.Input[str]
    logs_key_arn: pulumi.Input[str]
    s3_endpoint_id: pulumi.Input[str]
    profile: str
    #: prod: ``protect`` + ``retain_on_delete`` on every bucket.
    protect: bool = False
    #: ephemeral: buckets emptied on destroy so the stack goes away completely.
    force_destroy: bool = False
    break_glass_role_arn: str = ""
    image_access: str = "proxy"
    annotator_cidrs: tuple[str, ...] = ()
    label_studio_origin: str = ""
    #: Trail ARN allowed to write to the audit bucket (see :func:`infra.audit.trail_arn`).
    trail_arn: pulumi.Input[str] = ""
    #: Prefix (no trailing ``/``) under which the ALB writes its access logs into
    #: ``access-logs``; empty: no load balancer may write there.
    alb_log_prefix: str = ""


@dataclass
class BucketSpec:
    """How one bucket is configured."""

    purpose: str
    classification: str
    key_arn: pulumi.Input[str] | None  # None: SSE-S3 (access-logs only)
    private_to_vpc: bool = False
    cors: bool = False
    extra_statements: list[dict[str, Any]] = field(default_factory=list)


class Storage(pulumi.ComponentResource):
    """All buckets of the stack."""

    sources: dict[str, aws.s3.Bucket]
    annotations: aws.s3.Bucket
    models: aws.s3.Bucket
    audit: aws.s3.Bucket
    access_logs: aws.s3.Bucket

    def __init__(self, name: str, args: StorageArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:data:Storage", name, None, opts)
        self._args = args
        self.policies: dict[str, aws.s3.BucketPolicy] = {}
        self.access_logs = self._bucket(BucketSpec("access-logs", "internal", None))
        self._logged: list[aws.s3.Bucket] = []
        self.sources = {p: self._bucket(BucketSpec(
            f"source-{p}", "phi", args.data_key_arn, private_to_vpc=True,
            cors=args.image_access == "presign")) for p in args.projects}
        self.annotations = self._bucket(BucketSpec("annotations", "phi", args.data_key_arn,
                                                   private_to_vpc=True))
        self.models = self._bucket(BucketSpec("models", "phi", args.data_key_arn))
        self.audit = self._bucket(BucketSpec("audit", "internal", args.logs_key_arn))
        # the access-logs policy names every bucket that may deliver into it
        self._policy("access-logs", self.access_logs, iam.document(
            _tls_only(self.access_logs),
            _deliver_access_logs(args.ctx, self.access_logs, self._logged),
            alb_log_delivery(args.ctx, self.access_logs.arn, args.alb_log_prefix)
            if args.alb_log_prefix else None))
        self.register_outputs({"bucket_names": {b: v.bucket for b, v in self.buckets().items()}})

    def buckets(self) -> dict[str, aws.s3.Bucket]:
        """Purpose -> bucket, e.g. ``source-segmentation``."""
        return {**{f"source-{p}": b for p, b in self.sources.items()},
                "annotations": self.annotations, "models": self.models, "audit": self.audit,
                "access-logs": self.access_logs}

    # ---- one bucket -----------------------------------------------------------------------
    def _bucket(self, spec: BucketSpec) -> aws.s3.Bucket:
        args, n = self._args, spec.purpose
        bucket = aws.s3.Bucket(
            n, force_destroy=args.force_destroy, object_lock_enabled=False,
            tags={"Purpose": n, "DataClassification": spec.classification},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect,
                                        retain_on_delete=args.protect))
        # In prod the settings are protected too: `pulumi destroy --exclude-protected` must not
        # strip a retained bucket of its public access block, encryption or policy.
        child = pulumi.ResourceOptions(parent=bucket, protect=args.protect,
                                       retain_on_delete=args.protect)
        pab = aws.s3.BucketPublicAccessBlock(
            f"{n}-public-access-block", bucket=bucket.id, block_public_acls=True,
            block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
            opts=child)
        aws.s3.BucketOwnershipControls(
            f"{n}-ownership", bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketVersioning(f"{n}-versioning", bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        sse: dict[str, Any] = ({"sse_algorithm": "aws:kms", "kms_master_key_id": spec.key_arn}
                               if spec.key_arn is not None else {"sse_algorithm": "AES256"})
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{n}-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": sse,
                    "bucket_key_enabled": spec.key_arn is not None}], opts=child)
        aws.s3.BucketLifecycleConfiguration(
            f"{n}-lifecycle", bucket=bucket.id, rules=[
                {"id": "expire-noncurrent-versions", "status": "Enabled", "filter": {},
                 "noncurrent_version_expiration": {
                     "noncurrent_days": NONCURRENT_DAYS[args.profile]}},
                {"id": "abort-incomplete-multipart-uploads", "status": "Enabled", "filter": {},
                 "abort_incomplete_multipart_upload": {
                     "days_after_initiation": ABORT_MULTIPART_DAYS}}],
            opts=child)
        if spec.key_arn is None:  # access-logs: policy written once all buckets exist
            self._pab_access_logs = pab
            return bucket
        aws.s3.BucketLogging(
            f"{n}-logging", bucket=bucket.id, target_bucket=self.access_logs.id,
            target_prefix=f"{n}/", target_object_key_format={
                "partitioned_prefix": {"partition_date_source": "EventTime"}}, opts=child)
        self._logged.append(bucket)
        if spec.cors:
            aws.s3.BucketCorsConfiguration(
                f"{n}-cors", bucket=bucket.id, cors_rules=[{
                    "allowed_methods": ["GET", "HEAD"],
                    "allowed_origins": [args.label_studio_origin],
                    "allowed_headers": ["Authorization", "Range"],
                    "expose_headers": ["ETag", "Content-Length", "Content-Range"],
                    "max_age_seconds": 3000}], opts=child)
        statements = [_tls_only(bucket), *_require_key(bucket, spec.key_arn)]
        if spec.private_to_vpc:
            statements.append(self._vpc_only(bucket))
        if n == "audit":
            statements += _cloudtrail_delivery(args.ctx, bucket, args.trail_arn)
        self._policy(n, bucket, iam.document(*statements), depends_on=[pab])
        return bucket

    def _policy(self, n: str, bucket: aws.s3.Bucket, doc: dict[str, Any],
                depends_on: list[pulumi.Resource] | None = None) -> aws.s3.BucketPolicy:
        deps = depends_on or [self._pab_access_logs]
        policy = aws.s3.BucketPolicy(f"{n}-policy", bucket=bucket.id, policy=iam.to_json(doc),
                                     opts=pulumi.ResourceOptions(
                                         parent=bucket, depends_on=deps,
                                         protect=self._args.protect,
                                         retain_on_delete=self._args.protect))
        self.policies[n] = policy
        return policy

    def _vpc_only(self, bucket: aws.s3.Bucket) -> dict[str, Any]:
        args = self._args
        cond: dict[str, Any] = {"StringNotEquals": {"aws:SourceVpce": args.s3_endpoint_id}}
        if args.break_glass_role_arn:
            cond["ArnNotEquals"] = {"aws:PrincipalArn": args.break_glass_role_arn}
        if args.image_access == "presign":
            cond["NotIpAddress"] = {"aws:SourceIp": list(args.annotator_cidrs)}
        return {"Sid": "DenyDataAccessOutsideVpcEndpoint", "Effect": "Deny", "Principal": "*",
                "Action": list(DATA_ACTIONS), "Resource": _both(bucket), "Condition": cond}


def _both(bucket: aws.s3.Bucket) -> list[pulumi.Output[str]]:
    return [bucket.arn, bucket.arn.apply(lambda a: f"{a}/*")]


def _tls_only(bucket: aws.s3.Bucket) -> dict[str, Any]:
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
            "Action": "s3:*", "Resource": _both(bucket),
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _require_key(bucket: aws.s3.Bucket, key_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """Uploads either name this bucket's key or rely on its default (which is that key)."""
    objects = bucket.arn.apply(lambda a: f"{a}/*")
    return [
        {"Sid": "DenyOtherEncryption", "Effect": "Deny", "Principal": "*",
         "Action": "s3:PutObject", "Resource": objects,
         "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption":
                                                   "aws:kms"}}},
        {"Sid": "DenyOtherKmsKey", "Effect": "Deny", "Principal": "*",
         "Action": "s3:PutObject", "Resource": objects,
         "Condition": {"StringNotEqualsIfExists": {
             "s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}}},
    ]


def _deliver_access_logs(ctx: AwsContext, target: aws.s3.Bucket,
                         sources: list[aws.s3.Bucket]) -> dict[str, Any]:
    return {"Sid": "S3ServerAccessLogsDelivery", "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
            "Resource": target.arn.apply(lambda a: f"{a}/*"),
            "Condition": {"StringEquals": {"aws:SourceAccount": ctx.account_id},
                          "ArnLike": {"aws:SourceArn": [b.arn for b in sources]}}}


def elb_log_principal(region: str, partition: str = "aws") -> dict[str, str]:
    """Who Elastic Load Balancing writes access logs as in ``region`` (a policy Principal)."""
    if region in ELB_LOG_ACCOUNTS:
        return {"AWS": f"arn:{partition}:iam::{ELB_LOG_ACCOUNTS[region]}:root"}
    if region in ELB_LOG_SERVICE_REGIONS:
        return {"Service": ELB_LOG_DELIVERY_SERVICE}
    raise ConfigError(
        f"aws:region: got {region!r}; labelstack does not know who Elastic Load Balancing "
        "delivers ALB access logs as in this region. Add the region to ELB_LOG_ACCOUNTS (its "
        "ELB account id) or ELB_LOG_SERVICE_REGIONS in infra/storage.py, as the AWS guide "
        "'Enable access logs for your Application Load Balancer' lists it")


def alb_log_delivery(ctx: AwsContext, bucket_arn: pulumi.Input[str],
                     prefix: str) -> dict[str, Any]:
    """Put-only grant to ELB log delivery under ``<prefix>/AWSLogs/<this account>/``."""
    if not prefix or prefix != prefix.strip("/") or "AWSLogs" in prefix:
        raise ValueError(f"ALB access-log prefix {prefix!r}: must be non-empty, without a "
                         "leading or trailing '/', and not contain AWSLogs (ELB adds it)")
    principal = pulumi.Output.all(ctx.region, ctx.partition).apply(
        lambda a: elb_log_principal(a[0], a[1]))
    logs = pulumi.Output.all(bucket_arn, ctx.account_id).apply(
        lambda a: f"{a[0]}/{prefix}/AWSLogs/{a[1]}/*")
    return {"Sid": "AlbAccessLogsDelivery", "Effect": "Allow", "Principal": principal,
            "Action": "s3:PutObject", "Resource": logs}


def _cloudtrail_delivery(ctx: AwsContext, bucket: aws.s3.Bucket,
                         trail_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    cond = {"StringEquals": {"aws:SourceArn": trail_arn}}
    logs = pulumi.Output.all(bucket.arn, ctx.account_id).apply(
        lambda a: f"{a[0]}/AWSLogs/{a[1]}/*")
    return [
        {"Sid": "CloudTrailAclCheck", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:GetBucketAcl",
         "Resource": bucket.arn, "Condition": cond},
        {"Sid": "CloudTrailWrite", "Effect": "Allow",
         "Principal": {"Service": "cloudtrail.amazonaws.com"}, "Action": "s3:PutObject",
         "Resource": logs,
         "Condition": {"StringEquals": {"aws:SourceArn": trail_arn,
                                        "s3:x-amz-acl": "bucket-owner-full-control"}}},
    ]
