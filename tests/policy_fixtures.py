"""Passing and violating fixtures for every rule of the policy pack.

``CASES[rule] = Case(good, bad, message)``: ``good`` and ``bad`` are lists of :class:`R`
(a whole small stack for stack rules, one or more resources for resource rules); ``bad``
must produce a violation whose message contains ``message``. A rule without a case fails
``tests/test_policy_rules.py``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/data"
PROD = {"Environment": "prod", "Project": "labelstack"}


@dataclass
class R:
    """A resource of a fixture: type, name, camelCase props, property dependencies."""

    type: str
    name: str
    props: dict[str, Any]
    deps: dict[str, list[str]] = field(default_factory=dict)  # prop -> resource names


@dataclass
class Case:
    good: list[R]
    bad: list[R]
    message: str


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def patch(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with top-level keys changed (``None`` removes)."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# ---- S3 -----------------------------------------------------------------------------------
S3 = "aws:s3/"
BUCKET = "aws:s3/bucket:Bucket"
TLS_DENY = {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
            "Action": "s3:*", "Resource": ["arn:aws:s3:::data", "arn:aws:s3:::data/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
SSE_KMS = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms",
                                                   "kmsMasterKeyId": KEY_ARN},
            "bucketKeyEnabled": True}]


def s3_stack(drop: str = "", **over: Any) -> list[R]:
    """A compliant bucket with every setting; ``drop`` removes one, ``over`` replaces props."""
    parts = {
        "sse": R(S3 + "bucketServerSideEncryptionConfiguration:"
                 "BucketServerSideEncryptionConfiguration", "data-sse",
                 {"bucket": "data-id", "rules": over.get("sse", SSE_KMS)}, {"bucket": ["data"]}),
        "versioning": R(S3 + "bucketVersioning:BucketVersioning", "data-versioning",
                        {"bucket": "data-id", "versioningConfiguration": {
                            "status": over.get("versioning", "Enabled")}}, {"bucket": ["data"]}),
        "pab": R(S3 + "bucketPublicAccessBlock:BucketPublicAccessBlock", "data-pab",
                 {"bucket": "data-id", "blockPublicAcls": True, "ignorePublicAcls": True,
                  "restrictPublicBuckets": True, **over.get("pab", {"blockPublicPolicy": True})},
                 {"bucket": ["data"]}),
        "policy": R(S3 + "bucketPolicy:BucketPolicy", "data-policy",
                    {"bucket": "data-id", "policy": over.get("policy", doc(TLS_DENY))},
                    {"bucket": ["data"]}),
        "ownership": R(S3 + "bucketOwnershipControls:BucketOwnershipControls", "data-owner",
                       {"bucket": "data-id", "rule": {"objectOwnership": over.get(
                           "ownership", "BucketOwnerEnforced")}}, {"bucket": ["data"]}),
        "logging": R(S3 + "bucketLogging:BucketLogging", "data-logging",
                     {"bucket": "data-id", "targetBucket": "logs-id", "targetPrefix": "data/"},
                     {"bucket": ["data"], "targetBucket": ["logs"]}),
        "logs_sse": R(S3 + "bucketServerSideEncryptionConfiguration:"
                      "BucketServerSideEncryptionConfiguration", "logs-sse",
                      {"bucket": "logs-id", "rules": [{"applyServerSideEncryptionByDefault": {
                          "sseAlgorithm": "AES256"}}]}, {"bucket": ["logs"]}),
    }
    out = [R(BUCKET, "data", {"tags": {"DataClassification": "phi"}})]
    out += [r for k, r in parts.items() if k != drop]
    if "cors" in over:
        out.append(R(S3 + "bucketCorsConfiguration:BucketCorsConfiguration", "data-cors",
                     {"bucket": "data-id", "corsRules": over["cors"]}, {"bucket": ["data"]}))
    return copy.deepcopy(out)  # callers mutate props; keep SSE_KMS & co. pristine




# ---- compliant baselines for resource rules -----------------------------------------------
RDS = {"storageEncrypted": True, "kmsKeyId": KEY_ARN, "publiclyAccessible": False,
       "backupRetentionPeriod": 35, "deletionProtection": True, "multiAz": True,
       "skipFinalSnapshot": False, "enabledCloudwatchLogsExports": ["postgresql", "upgrade"],
       "autoMinorVersionUpgrade": True, "manageMasterUserPassword": True,
       "copyTagsToSnapshot": True, "engine": "postgres", "tags": PROD}
EKS = {"version": "1.34", "vpcConfig": {"endpointPublicAccess": False,
                                        "endpointPrivateAccess": True, "subnetIds": ["a", "b"]},
       "accessConfig": {"authenticationMode": "API",
                        "bootstrapClusterCreatorAdminPermissions": False},
       "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": KEY_ARN}},
       "enabledClusterLogTypes": ["api", "audit", "authenticator"], "tags": PROD}
ECR_REPO = {"imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": {"scanOnPush": True},
            "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": KEY_ARN}]}
LB = {"internal": True, "loadBalancerType": "application", "dropInvalidHeaderFields": True,
      "accessLogs": {"bucket": "logs", "enabled": True}, "enableDeletionProtection": True,
      "tags": PROD}
TRAIL = {"enableLogFileValidation": True, "kmsKeyId": KEY_ARN, "isMultiRegionTrail": True,
         "includeGlobalServiceEvents": True, "enableLogging": True,
         "cloudWatchLogsGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:trail:*",
         "snsTopicName": "arn:aws:sns:us-east-1:123456789012:trail-deliveries"}
LOG_GROUP = {"retentionInDays": 731, "kmsKeyId": KEY_ARN, "tags": PROD}
SECRET = {"kmsKeyId": KEY_ARN, "recoveryWindowInDays": 30, "tags": PROD}
CONTAINER = {
    "name": "app", "image": "public.ecr.aws/x/label-studio:1.23.2",
    "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
    "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}},
}
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
#: The SAM2 backend's env with caller authentication on (the chart's default render).
SAM2_AUTH_ENV = [
    {"name": "SAM2_BASIC_AUTH_USER", "valueFrom": {"secretKeyRef": {
        "name": "sam2-backend-auth", "key": "username"}}},
    {"name": "SAM2_BASIC_AUTH_PASS", "valueFrom": {"secretKeyRef": {
        "name": "sam2-backend-auth", "key": "password"}}},
    {"name": "SAM2_AUTH_DISABLED", "value": "false"}]


def deployment(container: dict[str, Any] | None = None, **pod: Any) -> dict[str, Any]:
    spec = {"serviceAccountName": "label-studio", "automountServiceAccountToken": False,
            "containers": [container or CONTAINER], **pod}
    return {"metadata": {"name": "app"},
            "spec": {"replicas": 1, "template": {"spec": spec}}}


def container(**changes: Any) -> dict[str, Any]:
    return patch(CONTAINER, **changes)


def sc(**changes: Any) -> dict[str, Any]:
    return container(securityContext=patch(CONTAINER["securityContext"], **changes))


def one(type_: str, good: dict[str, Any], bad: dict[str, Any], message: str,
        bad_type: str | None = None) -> Case:
    return Case([R(type_, "good", good)], [R(bad_type or type_, "bad", bad)], message)


PG_PARAMS = "aws:rds/parameterGroup:ParameterGroup"
PGAUDIT = [{"name": "shared_preload_libraries", "value": "pg_stat_statements,pgaudit"},
           {"name": "pgaudit.log", "value": "role,ddl"},
           {"name": "pgaudit.log_parameter", "value": "0"}]
IAM_POLICY = "aws:iam/rolePolicy:RolePolicy"
SCOPED = doc({"Sid": "ReadImages", "Effect": "Allow", "Action": ["s3:GetObject"],
              "Resource": "arn:aws:s3:::data/images/*"})
SG = "aws:ec2/securityGroup:SecurityGroup"
VPC_SG = {"ingress": [{"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0,
                       "cidrBlocks": ["10.60.0.0/16"]}], "egress": []}
OIDC = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC"


INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
_ALB_ANNOTATIONS = {
    "scheme": "internal", "certificate-arn":
    f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/0000", "ssl-redirect": "443",
    "ssl-policy": "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "load-balancer-attributes": "access_logs.s3.enabled=true,access_logs.s3.bucket=logs,"
    "routing.http.drop_invalid_header_fields.enabled=true"}


def _ingress(**annotations: Any) -> dict[str, Any]:
    merged = {k: v for k, v in {**_ALB_ANNOTATIONS, **annotations}.items() if v is not None}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "labelstack", "annotations": {
                f"alb.ingress.kubernetes.io/{k}": v for k, v in merged.items()}},
            "spec": {"ingressClassName": "alb", "rules": []}}


ALB_INGRESS = _ingress()


def irsa(condition: dict[str, Any]) -> dict[str, Any]:
    return {"assumeRolePolicy": doc({"Effect": "Allow", "Principal": {"Federated": OIDC},
                                     "Action": "sts:AssumeRoleWithWebIdentity",
                                     "Condition": condition})}


CASES: dict[str, Case] = {
    # S3 (stack rules joined to the bucket)
    "s3-bucket-sse-kms": Case(s3_stack(), s3_stack(sse=[{"applyServerSideEncryptionByDefault": {
        "sseAlgorithm": "AES256"}}]), "bucket data encrypts with AES256, not aws:kms"),
    "s3-bucket-versioning": Case(s3_stack(), s3_stack(versioning="Suspended"),
                                 "bucket data does not have versioning Enabled"),
    "s3-bucket-public-access-block": Case(s3_stack(), s3_stack(pab={"blockPublicPolicy": False}),
                                          "public access block leaves blockPublicPolicy off"),
    "s3-bucket-tls-only": Case(s3_stack(), s3_stack(policy=doc({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"})),
        "no bucket policy statement denying s3:* when aws:SecureTransport is false"),
    "s3-bucket-policy-no-public-principal": Case(s3_stack(), s3_stack(policy=doc(TLS_DENY, {
        "Sid": "Public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::data/*"})), "statement 'Public' allows Principal '*' with no "
        "Condition"),
    "s3-bucket-access-logging": Case(s3_stack(), s3_stack(drop="logging"),
                                     "bucket data has neither server access logging nor "
                                     "CloudTrail S3 data events"),
    "s3-bucket-owner-enforced": Case(s3_stack(), s3_stack(ownership="ObjectWriter"),
                                     "bucket data does not set objectOwnership "
                                     "BucketOwnerEnforced"),
    "s3-bucket-no-public-acl": one("aws:s3/bucketAcl:BucketAcl", {"acl": "private"},
                                   {"acl": "public-read"}, "canned ACL public-read grants access"),
    "s3-cors-restricted": Case(
        s3_stack(cors=[{"allowedOrigins": ["https://labels.example.org"],
                        "allowedMethods": ["GET", "HEAD"]}]),
        s3_stack(cors=[{"allowedOrigins": ["*"], "allowedMethods": ["GET"]}]),
        "CORS rule of data-cors allows every origin ('*')"),
    "s3-cors-presign-relaxation": Case(
        s3_stack(), s3_stack(cors=[{"allowedOrigins": ["https://labels.example.org"],
                                    "allowedMethods": ["GET"]}]),
        "from https://labels.example.org; relaxation imageAccess=presign"),
    "s3-bucket-force-destroy": one(BUCKET, {}, {"forceDestroy": True}, "forceDestroy is on"),
    # KMS
    "kms-key-rotation": one("aws:kms/key:Key", {"enableKeyRotation": True},
                            {"enableKeyRotation": False}, "enableKeyRotation is not true"),
    "kms-key-policy-no-public-principal": one(
        "aws:kms/key:Key",
        {"policy": doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                        "Action": "kms:*", "Resource": "*"})},
        {"policy": doc({"Sid": "Anyone", "Effect": "Allow", "Principal": {"AWS": "*"},
                        "Action": "kms:Decrypt", "Resource": "*"})},
        "key policy statement 'Anyone' allows Principal '*' with no Condition"),
    "kms-key-lockout-check": one("aws:kms/key:Key", {"bypassPolicyLockoutSafetyCheck": False},
                                 {"bypassPolicyLockoutSafetyCheck": True},
                                 "bypassPolicyLockoutSafetyCheck is true"),
    "kms-key-deletion-window": one("aws:kms/key:Key", {"deletionWindowInDays": 30, "tags": PROD},
                                   {"deletionWindowInDays": 7, "tags": PROD},
                                   "deletionWindowInDays is 7; prod and staging keys wait 30"),
    # IAM
    "iam-no-wildcard-action": one(IAM_POLICY, {"policy": SCOPED}, {"policy": doc({
        "Sid": "All", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::data"})},
        "statement 'All' allows wildcard action s3:*"),
    "iam-no-admin-statements": one("aws:iam/policy:Policy", {"policy": SCOPED}, {"policy": doc({
        "Effect": "Allow", "Action": "*", "Resource": "*"})},
        "grants Action '*' on Resource '*' (full administrator)"),
    "iam-data-actions-scoped": one(IAM_POLICY, {"policy": SCOPED}, {"policy": doc({
        "Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": "*"})}, "statement 'Read' allows s3:GetObject on Resource '*'"),
    "iam-no-passrole-wildcard": one(IAM_POLICY, {"policy": doc({
        "Effect": "Allow", "Action": "iam:PassRole",
        "Resource": f"arn:aws:iam::{ACCOUNT}:role/nodes"})}, {"policy": doc({
            "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"})},
        "allows iam:PassRole on Resource '*'"),
    "iam-no-managed-admin-policy": one(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        {"role": "nodes", "policyArn": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"},
        {"role": "nodes", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        "attaches AWS managed policy AdministratorAccess"),
    "iam-no-user-policies": one(IAM_POLICY, {"role": "app", "policy": SCOPED},
                                {"user": "alice", "policy": SCOPED},
                                "grants permissions directly to IAM user alice",
                                bad_type="aws:iam/userPolicy:UserPolicy"),
    "iam-no-access-keys": one("aws:iam/role:Role", {"assumeRolePolicy": doc({
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole"})}, {"user": "ci"},
        "creates a long-lived access key for IAM user ci", bad_type="aws:iam/accessKey:AccessKey"),
    "iam-trust-no-public-principal": one("aws:iam/role:Role", {"assumeRolePolicy": doc({
        "Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
        "Action": "sts:AssumeRole"})}, {"assumeRolePolicy": doc({
            "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})},
        "lets any principal ('*') assume the role"),
    "iam-web-identity-subject-pinned": one(
        "aws:iam/role:Role",
        irsa({"StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com",
                               f"{ISSUER}:sub": "system:serviceaccount:labelstack:app"}}),
        irsa({"StringEquals": {f"{ISSUER}:aud": "sts.amazonaws.com"}}),
        "accepts web identities without pinning the :sub claim"),
    # network
    "sg-no-internet-ingress": one(SG, VPC_SG, patch(VPC_SG, ingress=[
        {"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["0.0.0.0/0"]}]),
        "ingress on port 22 from 0.0.0.0/0"),
    "sg-internet-web-ingress": one(
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "10.60.0.0/16"},
        {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"},
        "ingress on port 443 from 0.0.0.0/0"),
    "sg-internet-egress": one(
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        {"type": "egress", "protocol": "tcp", "fromPort": 443, "toPort": 443,
         "cidrBlocks": ["10.60.0.0/16"]},
        {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0,
         "cidrBlocks": ["0.0.0.0/0"]}, "egress on port 0-65535 to 0.0.0.0/0"),
    "vpc-default-sg-closed": one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
                                 {"vpcId": "vpc-1"}, {"vpcId": "vpc-1", "ingress": [
                                     {"protocol": "-1", "fromPort": 0, "toPort": 0,
                                      "self": True}]},
                                 "the default security group keeps 1 rule(s)"),
    "vpc-flow-logs": Case(
        [R("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.60.0.0/16"}),
         R("aws:ec2/flowLog:FlowLog", "flow", {"vpcId": "vpc-id", "trafficType": "ALL"},
           {"vpcId": ["vpc"]})],
        [R("aws:ec2/vpc:Vpc", "vpc", {"cidrBlock": "10.60.0.0/16"}),
         R("aws:ec2/flowLog:FlowLog", "flow", {"vpcId": "vpc-other", "trafficType": "ALL"},
           {"vpcId": ["other"]})],
        "VPC vpc has no flow log capturing ALL"),
    "subnet-no-auto-public-ip": one("aws:ec2/subnet:Subnet", {"mapPublicIpOnLaunch": False},
                                    {"mapPublicIpOnLaunch": True},
                                    "mapPublicIpOnLaunch gives every instance"),
    "vpc-nat-egress-relaxation": one("aws:ec2/subnet:Subnet", {}, {"subnetId": "public-a"},
                                     "NAT gateway: workloads can reach the whole internet",
                                     bad_type="aws:ec2/natGateway:NatGateway"),
    "vpc-internet-gateway-relaxation": one("aws:ec2/subnet:Subnet", {}, {"vpcId": "vpc-1"},
                                           "internet gateway: the VPC has a route",
                                           bad_type="aws:ec2/internetGateway:InternetGateway"),
    "ec2-no-public-ip": one("aws:ec2/instance:Instance", {"associatePublicIpAddress": False},
                            {"associatePublicIpAddress": True},
                            "associatePublicIpAddress gives the instance a public IP"),
    "ec2-imdsv2-required": one("aws:ec2/launchTemplate:LaunchTemplate",
                               {"metadataOptions": {"httpTokens": "required"}},
                               {"metadataOptions": {"httpTokens": "optional"}},
                               "metadataOptions.httpTokens is optional, not required"),
    "vpc-s3-endpoint-policy": one(
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        {"serviceName": "com.amazonaws.us-east-1.s3", "vpcEndpointType": "Gateway",
         "policy": doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                        "Resource": "*", "Condition": {"StringEquals": {
                            "aws:ResourceAccount": ACCOUNT}}})},
        {"serviceName": "com.amazonaws.us-east-1.s3", "vpcEndpointType": "Gateway"},
        "S3 gateway endpoint com.amazonaws.us-east-1.s3 has no endpoint policy"),
    # EBS
    "ebs-volume-encrypted": one("aws:ebs/volume:Volume", {"encrypted": True, "kmsKeyId": KEY_ARN},
                                {"size": 10}, "volume is not encrypted"),
    "ebs-volume-cmk": one("aws:ebs/volume:Volume", {"encrypted": True, "kmsKeyId": KEY_ARN},
                          {"encrypted": True}, "encrypted with the AWS managed key"),
    "ebs-launch-template-encrypted": one(
        "aws:ec2/launchTemplate:LaunchTemplate",
        {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}]},
        {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]},
        "block device /dev/xvda is not encrypted"),
    "ebs-instance-disks-encrypted": one("aws:ec2/instance:Instance",
                                        {"rootBlockDevice": {"encrypted": True}},
                                        {"rootBlockDevice": {"volumeSize": 20}},
                                        "root block device is not encrypted"),
    "ebs-encryption-by-default": one("aws:ebs/encryptionByDefault:EncryptionByDefault",
                                     {"enabled": True}, {"enabled": False},
                                     "turns EBS encryption by default off"),
    "ebs-snapshot-copy-encrypted": one("aws:ebs/snapshotCopy:SnapshotCopy",
                                       {"encrypted": True, "kmsKeyId": KEY_ARN},
                                       {"sourceSnapshotId": "snap-1"},
                                       "snapshot copy is not encrypted"),
    # RDS
    "rds-storage-encrypted": one("aws:rds/instance:Instance", RDS,
                                 patch(RDS, storageEncrypted=False),
                                 "storageEncrypted is not true"),
    "rds-cmk": one("aws:rds/instance:Instance", RDS, patch(RDS, kmsKeyId=None),
                   "no customer-managed kmsKeyId"),
    "rds-not-public": one("aws:rds/instance:Instance", RDS, patch(RDS, publiclyAccessible=True),
                          "publiclyAccessible is true"),
    "rds-backup-retention": one("aws:rds/instance:Instance", RDS,
                                patch(RDS, backupRetentionPeriod=1),
                                "backupRetentionPeriod is 1; keep at least 7 days"),
    "rds-deletion-protection": one("aws:rds/instance:Instance", RDS,
                                   patch(RDS, deletionProtection=False),
                                   "deletionProtection is off in a prod stack"),
    "rds-multi-az": one("aws:rds/instance:Instance", RDS, patch(RDS, multiAz=False),
                        "multiAz is off in a prod stack"),
    "rds-final-snapshot": one("aws:rds/instance:Instance", RDS,
                              patch(RDS, skipFinalSnapshot=True),
                              "skipFinalSnapshot is true in a prod stack"),
    "rds-log-exports": one("aws:rds/instance:Instance", RDS,
                           patch(RDS, enabledCloudwatchLogsExports=["upgrade"]),
                           "enabledCloudwatchLogsExports does not include postgresql"),
    "rds-minor-upgrades": one("aws:rds/instance:Instance", RDS,
                              patch(RDS, autoMinorVersionUpgrade=False),
                              "autoMinorVersionUpgrade is false"),
    "rds-managed-master-password": one("aws:rds/instance:Instance", RDS,
                                       patch(RDS, manageMasterUserPassword=None,
                                             password="hunter2-but-longer"),
                                       "master password is a resource input"),
    "rds-force-ssl": one("aws:rds/parameterGroup:ParameterGroup",
                         {"family": "postgres17", "parameters": [
                             {"name": "rds.force_ssl", "value": "1"}]},
                         {"family": "postgres17", "parameters": [
                             {"name": "rds.force_ssl", "value": "0"}]},
                         "rds.force_ssl is 0; clients could connect without TLS"),
    "rds-pgaudit": Case(
        [R(PG_PARAMS, "good", {"family": "postgres17", "parameters": PGAUDIT}),
         R(PG_PARAMS, "mysql", {"family": "mysql8.0", "parameters": []})],
        [R(PG_PARAMS, "none", {"family": "postgres16", "parameters": PGAUDIT[1:]}),
         R(PG_PARAMS, "no-ddl", {"family": "postgres17", "parameters": [
             *PGAUDIT[:1], {"name": "pgaudit.log", "value": "role,write"}, *PGAUDIT[2:]]}),
         R(PG_PARAMS, "phi", {"family": "postgres17", "parameters": [
             *PGAUDIT[:2], {"name": "pgaudit.log_parameter", "value": "1"}]})],
        "shared_preload_libraries does not load pgaudit"),
    "rds-copy-tags-to-snapshots": one("aws:rds/instance:Instance", RDS,
                                      patch(RDS, copyTagsToSnapshot=False),
                                      "copyTagsToSnapshot is off in a prod stack"),
    # EKS
    "eks-endpoint-not-open": one("aws:eks/cluster:Cluster", EKS, patch(EKS, vpcConfig={
        "endpointPublicAccess": True, "endpointPrivateAccess": True}),
        "the API endpoint is public with no publicAccessCidrs (open to 0.0.0.0/0)"),
    "eks-endpoint-public-relaxation": one("aws:eks/cluster:Cluster", EKS, patch(EKS, vpcConfig={
        "endpointPublicAccess": True, "endpointPrivateAccess": True,
        "publicAccessCidrs": ["203.0.113.0/24"]}),
        "reachable from the internet (203.0.113.0/24); relaxation clusterPublicAccessCidrs"),
    "eks-private-endpoint": one("aws:eks/cluster:Cluster", EKS, patch(EKS, vpcConfig={
        "endpointPublicAccess": False, "endpointPrivateAccess": False}),
        "endpointPrivateAccess is not true"),
    "eks-secrets-encrypted": one("aws:eks/cluster:Cluster", EKS,
                                 patch(EKS, encryptionConfig=None),
                                 "encryptionConfig does not envelope-encrypt secrets"),
    "eks-control-plane-logging": one("aws:eks/cluster:Cluster", EKS,
                                     patch(EKS, enabledClusterLogTypes=["api"]),
                                     "enabledClusterLogTypes misses audit, authenticator"),
    "eks-access-entries": one("aws:eks/cluster:Cluster", EKS, patch(EKS, accessConfig={
        "authenticationMode": "CONFIG_MAP", "bootstrapClusterCreatorAdminPermissions": False}),
        "authenticationMode is CONFIG_MAP; use API"),
    "eks-no-creator-admin": one("aws:eks/cluster:Cluster", EKS, patch(EKS, accessConfig={
        "authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": True}),
        "bootstrapClusterCreatorAdminPermissions is not false"),
    "eks-version-pinned": one("aws:eks/cluster:Cluster", EKS, patch(EKS, version=None),
                              "version is not pinned"),
    "eks-nodegroup-no-ssh": one("aws:eks/nodeGroup:NodeGroup", {"nodeGroupName": "system"},
                                {"remoteAccess": {"ec2SshKey": "ops"}},
                                "remoteAccess opens SSH to the nodes"),
    # ECR
    "ecr-scan-on-push": one("aws:ecr/repository:Repository", ECR_REPO, patch(
        ECR_REPO, imageScanningConfiguration={"scanOnPush": False}),
        "imageScanningConfiguration.scanOnPush is not true"),
    "ecr-tag-immutable": one("aws:ecr/repository:Repository", ECR_REPO,
                             patch(ECR_REPO, imageTagMutability="MUTABLE"),
                             "imageTagMutability is MUTABLE"),
    "ecr-kms-encrypted": one("aws:ecr/repository:Repository", ECR_REPO, patch(
        ECR_REPO, encryptionConfigurations=[{"encryptionType": "AES256"}]),
        "encrypted with AES256, not a KMS key"),
    "ecr-lifecycle-policy": Case(
        [R("aws:ecr/repository:Repository", "sam2", patch(ECR_REPO, name="labelstack/sam2")),
         R("aws:ecr/lifecyclePolicy:LifecyclePolicy", "sam2-lifecycle",
           {"repository": "labelstack/sam2", "policy": "{}"}, {"repository": ["sam2"]})],
        [R("aws:ecr/repository:Repository", "sam2", patch(ECR_REPO, name="labelstack/sam2"))],
        "repository labelstack/sam2 has no lifecycle policy"),
    "ecr-not-public": one("aws:ecr/repositoryPolicy:RepositoryPolicy", {"policy": doc({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "ecr:BatchGetImage"})}, {"policy": doc({
            "Sid": "Pull", "Effect": "Allow", "Principal": "*", "Action": "ecr:BatchGetImage"})},
        "repository policy statement 'Pull' allows Principal '*'"),
    # ELB
    "elb-ingress-internet-facing-relaxation": one(
        INGRESS, ALB_INGRESS, _ingress(scheme="internet-facing"),
        "internet-facing ALB; relaxation ingressMode=public"),
    "elb-ingress-tls": one(INGRESS, ALB_INGRESS, _ingress(**{"ssl-redirect": None}),
                           "ssl-redirect is not 443"),
    "elb-internet-facing-relaxation": one("aws:lb/loadBalancer:LoadBalancer", LB,
                                          patch(LB, internal=False),
                                          "internet-facing; relaxation ingressMode=public"),
    "elb-drop-invalid-headers": one("aws:lb/loadBalancer:LoadBalancer", LB,
                                    patch(LB, dropInvalidHeaderFields=False),
                                    "dropInvalidHeaderFields is not true"),
    "elb-access-logs": one("aws:lb/loadBalancer:LoadBalancer", LB, patch(LB, accessLogs=None),
                           "accessLogs are not enabled"),
    "elb-deletion-protection": one("aws:lb/loadBalancer:LoadBalancer", LB,
                                   patch(LB, enableDeletionProtection=False),
                                   "enableDeletionProtection is off in a prod stack"),
    "elb-https-only": one(
        "aws:lb/listener:Listener",
        {"protocol": "HTTP", "port": 80, "defaultActions": [
            {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443",
                                              "statusCode": "HTTP_301"}}]},
        {"protocol": "HTTP", "port": 80, "defaultActions": [
            {"type": "forward", "targetGroupArn": "tg"}]},
        "an HTTP listener serves traffic instead of redirecting to HTTPS"),
    "elb-tls12-policy": one(
        "aws:lb/listener:Listener",
        {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"},
        {"protocol": "HTTPS", "sslPolicy": "ELBSecurityPolicy-2016-08"},
        "sslPolicy ELBSecurityPolicy-2016-08 still allows TLS older than 1.2"),
    # CloudTrail
    "cloudtrail-log-validation": one("aws:cloudtrail/trail:Trail", TRAIL,
                                     patch(TRAIL, enableLogFileValidation=False),
                                     "enableLogFileValidation is not true"),
    "cloudtrail-kms": one("aws:cloudtrail/trail:Trail", TRAIL, patch(TRAIL, kmsKeyId=None),
                          "log files are not encrypted with a KMS key"),
    "cloudtrail-enabled": one("aws:cloudtrail/trail:Trail", TRAIL,
                              patch(TRAIL, enableLogging=False),
                              "enableLogging is false: the trail records nothing"),
    "cloudtrail-global-events": one("aws:cloudtrail/trail:Trail", TRAIL,
                                    patch(TRAIL, includeGlobalServiceEvents=False),
                                    "includeGlobalServiceEvents is false"),
    "cloudtrail-sns-notifications": one("aws:cloudtrail/trail:Trail", TRAIL,
                                        patch(TRAIL, snsTopicName=None),
                                        "notifies no SNS topic of log file deliveries"),
    "cloudtrail-cloudwatch": one("aws:cloudtrail/trail:Trail", TRAIL,
                                 patch(TRAIL, cloudWatchLogsGroupArn=None),
                                 "does not deliver to CloudWatch Logs"),
    # CloudWatch Logs
    "logs-retention": one("aws:cloudwatch/logGroup:LogGroup", LOG_GROUP,
                          patch(LOG_GROUP, retentionInDays=30),
                          "retentionInDays is 30; prod stacks keep logs at least 365 days"),
    "logs-kms": one("aws:cloudwatch/logGroup:LogGroup", LOG_GROUP,
                    patch(LOG_GROUP, kmsKeyId=None),
                    "not encrypted with a customer-managed key"),
    # Secrets Manager
    "secrets-cmk": one("aws:secretsmanager/secret:Secret", SECRET, patch(SECRET, kmsKeyId=None),
                       "encrypted with the AWS managed key, not a kmsKeyId"),
    "secrets-recovery-window": one("aws:secretsmanager/secret:Secret", SECRET,
                                   patch(SECRET, recoveryWindowInDays=0),
                                   "recoveryWindowInDays is 0 in a prod stack"),
    "secrets-not-public": one("aws:secretsmanager/secretPolicy:SecretPolicy", {"policy": doc({
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/app"},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"})}, {"policy": doc({
            "Sid": "Everyone", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": "secretsmanager:GetSecretValue", "Resource": "*"})},
        "secret policy statement 'Everyone' allows Principal '*'"),
    # Kubernetes workloads
    "k8s-run-as-non-root": one(DEPLOYMENT, deployment(), deployment(sc(runAsNonRoot=False)),
                               "container app: runAsNonRoot is not true"),
    "k8s-read-only-root-fs": one(DEPLOYMENT, deployment(),
                                 deployment(sc(readOnlyRootFilesystem=None)),
                                 "container app: readOnlyRootFilesystem is not true"),
    "k8s-no-privilege-escalation": one(DEPLOYMENT, deployment(),
                                       deployment(sc(allowPrivilegeEscalation=True)),
                                       "container app: allowPrivilegeEscalation is not false"),
    "k8s-drop-all-capabilities": one(DEPLOYMENT, deployment(), deployment(sc(
        capabilities={"drop": ["NET_RAW"]})),
        "container app: capabilities.drop does not include ALL"),
    "k8s-seccomp-runtime-default": one(DEPLOYMENT, deployment(), deployment(sc(
        seccompProfile={"type": "Unconfined"})),
        "container app: seccompProfile is Unconfined, not RuntimeDefault"),
    "k8s-no-privileged": one(DEPLOYMENT, deployment(), deployment(sc(privileged=True)),
                             "container app: privileged is true"),
    "k8s-resource-requests": one(DEPLOYMENT, deployment(), deployment(container(
        resources={"limits": {"memory": "2Gi"}})),
        "container app: resources.requests misses cpu, memory"),
    "k8s-memory-limits": one(DEPLOYMENT, deployment(), deployment(container(
        resources={"requests": {"cpu": "1", "memory": "1Gi"}})),
        "container app: resources.limits.memory is unset"),
    "k8s-liveness-probe": one(DEPLOYMENT, deployment(), deployment(container(
        livenessProbe=None)), "container app: no livenessProbe"),
    "k8s-readiness-probe": one(DEPLOYMENT, deployment(), deployment(container(
        readinessProbe=None)), "container app: no readinessProbe"),
    "k8s-image-pinned": one(DEPLOYMENT, deployment(), deployment(container(
        image="heartexlabs/label-studio:latest")),
        "image heartexlabs/label-studio:latest is not pinned"),
    "k8s-no-default-sa-token": one(DEPLOYMENT, deployment(), deployment(
        serviceAccountName="default", automountServiceAccountToken=True),
        "mounts the default service account's token"),
    "k8s-no-host-namespaces": one(DEPLOYMENT, deployment(), deployment(hostNetwork=True),
                                  "hostNetwork is true"),
    "k8s-no-host-path": one(DEPLOYMENT, deployment(), deployment(volumes=[
        {"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]),
        "volume docker mounts hostPath /var/run/docker.sock"),
    "k8s-policy-exemptions": one(DEPLOYMENT, deployment(), {**deployment(), "metadata": {
        "name": "app", "annotations": {
            "exempt.policy.labelstack.io/k8s-no-host-path": "kubelet device-plugin socket"}}},
        "exempt from k8s-no-host-path: kubelet device-plugin socket"),
    "k8s-sam2-auth-disabled-relaxation": one(
        DEPLOYMENT, deployment(container(env=SAM2_AUTH_ENV)),
        deployment(container(env=[{"name": "SAM2_AUTH_DISABLED", "value": "True"}])),
        "container app: SAM2_AUTH_DISABLED=True turns caller authentication off"),
}
