"""S3: pulumi-aws v7 configures a bucket through separate resources, so the bucket rules are
stack rules that join each setting back to its bucket (see :func:`_util.related`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from policies.model import ADVISORY, CRITICAL, HIGH, LOW, MEDIUM, Rule, StackView
from policies.rules._util import (
    actions,
    as_list,
    get,
    label,
    open_to_anyone,
    related,
    statements,
)

BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
       "aws:s3/bucketServerSideEncryptionConfigurationV2:"
       "BucketServerSideEncryptionConfigurationV2")
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning",
              "aws:s3/bucketVersioningV2:BucketVersioningV2")
PAB = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
OWNERSHIP = ("aws:s3/bucketOwnershipControls:BucketOwnershipControls",)
CORS = ("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration",
        "aws:s3/bucketCorsConfigurationV2:BucketCorsConfigurationV2")
ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
TRAIL = "aws:cloudtrail/trail:Trail"
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")


def _buckets(view: StackView) -> Iterator[PolicyResource]:
    yield from view.of_type(*BUCKETS)


def _name(bucket: PolicyResource) -> str:
    return str(bucket.props.get("bucket") or bucket.name)


def _sse_rules(view: StackView, bucket: PolicyResource) -> list[Mapping[str, Any]]:
    rules = [r for res in related(view, bucket, SSE, "bucket")
             for r in as_list(res.props.get("rules"))]
    inline = bucket.props.get("serverSideEncryptionConfiguration")  # deprecated inline form
    return rules + as_list(get(inline or {}, "rule"))


def _log_targets(view: StackView) -> set[str]:
    """URNs of buckets that receive S3 server access logs."""
    return {b.urn for b in _buckets(view)
            if related(view, b, LOGGING, "targetBucket")}


def check_sse_kms(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    targets = _log_targets(view)
    for b in _buckets(view):
        rules = _sse_rules(view, b)
        algos = [get(r, "applyServerSideEncryptionByDefault", "sseAlgorithm") for r in rules]
        keys = [get(r, "applyServerSideEncryptionByDefault", "kmsMasterKeyId") for r in rules]
        if not rules:
            yield b, f"bucket {_name(b)} has no BucketServerSideEncryptionConfiguration"
        elif b.urn in targets:
            # S3 delivers server access logs only to SSE-S3 buckets (no SSE-KMS).
            if not any(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algos):
                yield b, f"access-log bucket {_name(b)} has no default encryption"
        elif not any(str(a).startswith("aws:kms") for a in algos):
            yield b, (f"bucket {_name(b)} encrypts with {algos[0]}, not aws:kms with a "
                      "customer-managed key")
        elif not any(keys):
            yield b, f"bucket {_name(b)} uses aws:kms without a customer-managed kmsMasterKeyId"


def check_versioning(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for b in _buckets(view):
        status = [get(v.props, "versioningConfiguration", "status")
                  for v in related(view, b, VERSIONING, "bucket")]
        status += [("Enabled" if get(b.props, "versioning", "enabled") else None)]
        if "Enabled" not in status:
            yield b, f"bucket {_name(b)} does not have versioning Enabled"


def check_public_access_block(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for b in _buckets(view):
        blocks = related(view, b, PAB, "bucket")
        if not blocks:
            yield b, f"bucket {_name(b)} has no BucketPublicAccessBlock"
            continue
        off = [f for f in PAB_FLAGS if not all(pb.props.get(f) is True for pb in blocks)]
        if off:
            yield b, f"bucket {_name(b)} public access block leaves {', '.join(off)} off"


def _tls_denied(stmts: list[Mapping[str, Any]]) -> bool:
    for s in stmts:
        cond = s.get("Condition") or {}
        secure = get(cond, "Bool", "aws:SecureTransport")
        if (str(s.get("Effect", "")).lower() == "deny" and str(secure).lower() == "false"
                and any(a in ("s3:*", "*") for a in actions(s))):
            return True
    return False


def check_tls_only(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for b in _buckets(view):
        stmts = [s for p in related(view, b, POLICY, "bucket")
                 for s in statements(p.props.get("policy"))]
        if not _tls_denied(stmts):
            yield b, (f"bucket {_name(b)} has no bucket policy statement denying s3:* when "
                      "aws:SecureTransport is false")


def check_policy_public(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for p in view.of_type(*POLICY):
        for s in statements(p.props.get("policy")):
            if open_to_anyone(s):
                yield p, (f"bucket policy {p.name}: {label(s)} allows Principal '*' with no "
                          "Condition")


def _trail_logs_s3_data(view: StackView) -> bool:
    for t in view.of_type(TRAIL):
        for sel in as_list(t.props.get("advancedEventSelectors")):
            for f in as_list(sel.get("fieldSelectors")):
                if f.get("field") == "resources.type" and "AWS::S3::Object" in as_list(
                        f.get("equals")):
                    return True
        for sel in as_list(t.props.get("eventSelectors")):
            for d in as_list(sel.get("dataResources")):
                if d.get("type") == "AWS::S3::Object":
                    return True
    return False


def check_logging(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    if _trail_logs_s3_data(view):
        return  # object-level access is recorded by CloudTrail data events
    targets = _log_targets(view)  # a log bucket does not log into itself
    for b in _buckets(view):
        if related(view, b, LOGGING, "bucket") or b.urn in targets:
            continue
        yield b, (f"bucket {_name(b)} has neither server access logging nor CloudTrail S3 "
                  "data events")


def check_ownership(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for b in _buckets(view):
        modes = [get(o.props, "rule", "objectOwnership")
                 for o in related(view, b, OWNERSHIP, "bucket")]
        if "BucketOwnerEnforced" not in modes:
            yield b, (f"bucket {_name(b)} does not set objectOwnership BucketOwnerEnforced "
                      "(ACLs stay enabled)")


def check_no_public_acl(acl_props: Mapping[str, Any]) -> Iterator[str]:
    acl = acl_props.get("acl")
    if acl in PUBLIC_ACLS:
        yield f"canned ACL {acl} grants access outside the account"
    for g in as_list(get(acl_props, "accessControlPolicy", "grants")):
        uri = str(get(g, "grantee", "uri") or "")
        if uri.endswith(("/global/AllUsers", "/global/AuthenticatedUsers")):
            yield f"ACL grant to {uri} makes the bucket public"


def check_cors_wildcard(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for c in view.of_type(*CORS):
        for r in as_list(c.props.get("corsRules")):
            if "*" in as_list(r.get("allowedOrigins")):
                yield c, f"CORS rule of {c.name} allows every origin ('*')"
            if set(as_list(r.get("allowedMethods"))) & {"PUT", "POST", "DELETE"}:
                yield c, f"CORS rule of {c.name} allows browsers to write or delete objects"


def check_cors_present(view: StackView) -> Iterator[tuple[PolicyResource, str]]:
    for c in view.of_type(*CORS):
        origins = sorted({o for r in as_list(c.props.get("corsRules"))
                          for o in as_list(r.get("allowedOrigins"))})
        yield c, (f"{c.name}: browsers fetch objects directly (presigned URLs) from "
                  f"{', '.join(origins) or 'no origin'}; relaxation imageAccess=presign")


def check_force_destroy(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("forceDestroy"):
        yield "forceDestroy is on: `pulumi destroy` deletes every object (ephemeral stacks only)"


_S = "s3"
RULES = [
    Rule("s3-bucket-sse-kms", "S3 buckets encrypt at rest with SSE-KMS and a customer-managed "
         "key (server access log buckets, which S3 only writes with SSE-S3: AES256).", _S,
         HIGH, "164.312(a)(2)(iv)",
         "AWS Config s3-default-encryption-kms", "Add a BucketServerSideEncryptionConfiguration "
         "with sseAlgorithm aws:kms and kmsMasterKeyId set to the data key.", check_sse_kms),
    Rule("s3-bucket-versioning", "S3 buckets keep object versions so overwritten or deleted "
         "PHI can be recovered.", _S, MEDIUM, "164.312(c)(1)",
         "AWS Config s3-bucket-versioning-enabled", "Add a BucketVersioning with "
         "versioningConfiguration.status Enabled.", check_versioning),
    Rule("s3-bucket-public-access-block", "S3 buckets block every form of public access.", _S,
         CRITICAL, "164.312(a)(1)", "AWS Config s3-bucket-level-public-access-prohibited",
         "Add a BucketPublicAccessBlock with blockPublicAcls, blockPublicPolicy, "
         "ignorePublicAcls and restrictPublicBuckets all true.", check_public_access_block),
    Rule("s3-bucket-tls-only", "S3 bucket policies deny requests not made over TLS.", _S, HIGH,
         "164.312(e)(1)", "AWS Config s3-bucket-ssl-requests-only", "Add a Deny statement on "
         "s3:* with Condition Bool aws:SecureTransport false to the bucket policy.",
         check_tls_only),
    Rule("s3-bucket-policy-no-public-principal", "S3 bucket policies never allow the anonymous "
         "principal '*' without a condition.", _S, CRITICAL, "164.312(a)(1)",
         "AWS Config s3-bucket-public-read-prohibited / checkov CKV_AWS_70",
         "Name the principals, or add a "
         "Condition (aws:SourceVpce, aws:PrincipalArn) to the statement.", check_policy_public),
    Rule("s3-bucket-access-logging", "Access to S3 objects is logged (server access logs or "
         "CloudTrail S3 data events).", _S, MEDIUM, "164.312(b)",
         "AWS Config s3-bucket-logging-enabled", "Add a BucketLogging to a log bucket, or a "
         "CloudTrail trail with AWS::S3::Object data event selectors.", check_logging),
    Rule("s3-bucket-owner-enforced", "S3 buckets disable ACLs (object ownership "
         "BucketOwnerEnforced).", _S, MEDIUM, "164.312(a)(1)", "checkov CKV2_AWS_65",
         "Add a BucketOwnershipControls with rule.objectOwnership BucketOwnerEnforced.",
         check_ownership),
    Rule("s3-bucket-no-public-acl", "S3 ACLs never grant AllUsers or AuthenticatedUsers.", _S,
         CRITICAL, "164.312(a)(1)",
         "AWS Config s3-bucket-public-read-prohibited / s3-bucket-public-write-prohibited",
         "Remove the public canned ACL or grant; keep ACLs disabled.", check_no_public_acl,
         types=(*ACL, *BUCKETS)),
    Rule("s3-cors-restricted", "S3 CORS rules name exact origins and allow only reads.", _S,
         HIGH, "164.312(a)(1)", "custom (CORS: exact origins, read-only methods)",
         "List the Label Studio origin in allowedOrigins and only GET/HEAD in allowedMethods.",
         check_cors_wildcard),
    Rule("s3-cors-presign-relaxation", "Flags buckets browsers read directly (CORS for "
         "presigned URLs): the imageAccess=presign relaxation.", _S, LOW, "164.312(e)(1)",
         "custom (labelstack relaxation)", "Use imageAccess=proxy so Label Studio streams "
         "images and the buckets stay reachable only through the VPC endpoint.",
         check_cors_present, enforcement=ADVISORY),
    Rule("s3-bucket-force-destroy", "Flags buckets whose objects `pulumi destroy` deletes "
         "(forceDestroy), allowed for ephemeral stacks only.", _S, LOW, "164.310(d)(2)(iv)",
         "custom (labelstack ephemeral profile)", "Leave forceDestroy unset outside "
         "ephemeral stacks.", check_force_destroy, types=BUCKETS, enforcement=ADVISORY),
]
