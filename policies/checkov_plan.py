"""checkov's Terraform AWS checks on a stack: the mocks plan as a Terraform plan JSON.

``python -m policies.checkov_plan --stack prod`` writes ``checkov-plan-<stack>.json`` (the
shape of ``terraform show -json``: ``planned_values`` with each resource's inputs under its
Terraform type and attribute names, and ``configuration`` with the references between
resources, which checkov's graph checks join on), runs
``checkov --framework terraform_plan`` on it with the documented waivers of :data:`WAIVERS`,
and exits 1 on any other failed check.

pulumi-aws is bridged from the Terraform AWS provider, so a Pulumi input is the Terraform
argument in camelCase; the exceptions are the type names (:data:`TF_TYPES`, explicit: an
unmapped AWS type is an error, never skipped) and the block lists Pulumi pluralises
(:data:`PLURAL_BLOCKS`). Kubernetes objects are not Terraform AWS resources: the pack's
Kubernetes rules and ``python -m policies.manifests`` cover them.

Exit codes: 0 no failed check beyond the waivers; 1 failed checks; 2 bad arguments or
configuration; 3 checkov could not run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venvs" / "checkov" / "bin" / "checkov"

#: Pulumi type token -> Terraform resource type (the resources this program declares, and
#: the ones its relaxations add).
TF_TYPES = {
    "aws:autoscaling/tag:Tag": "aws_autoscaling_group_tag",
    "aws:cloudtrail/trail:Trail": "aws_cloudtrail",
    "aws:cloudwatch/logGroup:LogGroup": "aws_cloudwatch_log_group",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "aws_default_security_group",
    "aws:ec2/flowLog:FlowLog": "aws_flow_log",
    "aws:ec2/instance:Instance": "aws_instance",
    "aws:ec2/internetGateway:InternetGateway": "aws_internet_gateway",
    "aws:ec2/launchTemplate:LaunchTemplate": "aws_launch_template",
    "aws:ec2/natGateway:NatGateway": "aws_nat_gateway",
    "aws:ec2/routeTable:RouteTable": "aws_route_table",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "aws_route_table_association",
    "aws:ec2/securityGroup:SecurityGroup": "aws_security_group",
    "aws:ec2/subnet:Subnet": "aws_subnet",
    "aws:ec2/vpc:Vpc": "aws_vpc",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "aws_vpc_endpoint",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "aws_ecr_lifecycle_policy",
    "aws:ecr/repository:Repository": "aws_ecr_repository",
    "aws:eks/accessEntry:AccessEntry": "aws_eks_access_entry",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation":
        "aws_eks_access_policy_association",
    "aws:eks/addon:Addon": "aws_eks_addon",
    "aws:eks/cluster:Cluster": "aws_eks_cluster",
    "aws:eks/nodeGroup:NodeGroup": "aws_eks_node_group",
    "aws:iam/instanceProfile:InstanceProfile": "aws_iam_instance_profile",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": "aws_iam_openid_connect_provider",
    "aws:iam/policy:Policy": "aws_iam_policy",
    "aws:iam/role:Role": "aws_iam_role",
    "aws:iam/rolePolicy:RolePolicy": "aws_iam_role_policy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "aws_iam_role_policy_attachment",
    "aws:iam/serviceLinkedRole:ServiceLinkedRole": "aws_iam_service_linked_role",
    "aws:kms/alias:Alias": "aws_kms_alias",
    "aws:kms/grant:Grant": "aws_kms_grant",
    "aws:kms/key:Key": "aws_kms_key",
    "aws:rds/instance:Instance": "aws_db_instance",
    "aws:rds/parameterGroup:ParameterGroup": "aws_db_parameter_group",
    "aws:rds/subnetGroup:SubnetGroup": "aws_db_subnet_group",
    "aws:s3/bucket:Bucket": "aws_s3_bucket",
    "aws:s3/bucketV2:BucketV2": "aws_s3_bucket",
    "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration":
        "aws_s3_bucket_cors_configuration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration":
        "aws_s3_bucket_lifecycle_configuration",
    "aws:s3/bucketLogging:BucketLogging": "aws_s3_bucket_logging",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls":
        "aws_s3_bucket_ownership_controls",
    "aws:s3/bucketPolicy:BucketPolicy": "aws_s3_bucket_policy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        "aws_s3_bucket_public_access_block",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        "aws_s3_bucket_server_side_encryption_configuration",
    "aws:s3/bucketVersioning:BucketVersioning": "aws_s3_bucket_versioning",
    "aws:sns/topic:Topic": "aws_sns_topic",
    "aws:sns/topicPolicy:TopicPolicy": "aws_sns_topic_policy",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":
        "aws_vpc_security_group_egress_rule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        "aws_vpc_security_group_ingress_rule",
}

#: Pulumi names a Terraform block list (no MaxItems 1) in the plural; Terraform in the
#: singular. snake_case Pulumi name -> Terraform name.
PLURAL_BLOCKS = {
    "routes": "route", "parameters": "parameter", "taints": "taint", "rules": "rule",
    "advanced_event_selectors": "advanced_event_selector",
    "field_selectors": "field_selector", "starts_withs": "starts_with",
    "ends_withs": "ends_with", "not_starts_withs": "not_starts_with",
    "not_ends_withs": "not_ends_with",
    "event_selectors": "event_selector", "insight_selectors": "insight_selector",
    "data_resources": "data_resource", "transitions": "transition",
    "noncurrent_version_transitions": "noncurrent_version_transition",
    "master_user_secrets": "master_user_secret",
    "encryption_configurations": "encryption_configuration",
    "ebs_block_devices": "ebs_block_device", "inline_policies": "inline_policy",
    "target_grants": "target_grant", "subnet_configurations": "subnet_configuration",
    "cors_rules": "cors_rule",
}

#: Attributes that are string maps (their keys are data, not attribute names).
MAP_ATTRIBUTES = frozenset({"tags", "tags_all", "labels"})

#: Failed checkov checks accepted on purpose: (check id, resource address pattern) -> why.
#: docs/policies.md lists them (``python -m policies.docs``).
WAIVERS: dict[tuple[str, str], str] = {
    ("CKV2_AWS_62", "aws_s3_bucket.*"):
        "S3 event notifications feed workflows, and nothing here consumes bucket events; every "
        "object read and write of the source and annotation buckets is recorded by the "
        "trail's S3 data events, the rest by server access logs.",
    ("CKV_AWS_144", "aws_s3_bucket.*"):
        "Cross-region replication would copy PHI to a second region: a data-residency "
        "decision per deployment. Recovery here is versioning, retained buckets and RDS "
        "backups; add replication in your own stack if your contingency plan needs a region.",
    ("CKV_AWS_145", "aws_s3_bucket.access-logs"):
        "S3 server access log delivery supports only SSE-S3 on the target bucket, not SSE-KMS; "
        "the logs hold request metadata, not object content (the s3-bucket-sse-kms rule makes "
        "the same exception).",
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class UnmappedType(ValueError):
    """An AWS type token with no Terraform type in :data:`TF_TYPES`."""


def snake(name: str) -> str:
    """Pulumi camelCase input -> Terraform attribute (``kmsKeyId`` -> ``kms_key_id``)."""
    out = _CAMEL.sub("_", name).lower()
    return PLURAL_BLOCKS.get(out, out)


def _values(value: Any, key: str | None = None) -> Any:
    """Inputs -> Terraform values: attributes snake_cased, string maps kept as they are."""
    if isinstance(value, dict):
        if key in MAP_ATTRIBUTES:
            return dict(value)
        return {snake(k): _values(v, snake(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_values(v, key) for v in value]
    return value


def tf_type(token: str) -> str:
    """The Terraform type of a Pulumi AWS type token."""
    try:
        return TF_TYPES[token]
    except KeyError:
        raise UnmappedType(f"{token}: no Terraform type in policies/checkov_plan.py TF_TYPES; "
                           "add its aws_* name (from the pulumi-aws registry docs)") from None


def to_terraform_plan(plan: Any) -> dict[str, Any]:
    """A :class:`infra.offline.Plan` as ``terraform show -json`` output (AWS resources)."""
    aws = [r for r in plan.resources if r.custom and r.type.startswith("aws:")]
    address = {r.name: f"{tf_type(r.type)}.{r.name}" for r in aws}
    planned, configured, changes = [], [], []
    for res in aws:
        kind = tf_type(res.type)
        addr = f"{kind}.{res.name}"
        values = _values(res.inputs)
        planned.append({"address": addr, "mode": "managed", "type": kind, "name": res.name,
                        "provider_name": "registry.terraform.io/hashicorp/aws",
                        "schema_version": 0, "values": values})
        expressions = {}
        for prop, sources in sorted(res.property_deps.items()):
            refs = [f"{address[s]}.id" for s in sorted(sources) if s in address]
            refs += [address[s] for s in sorted(sources) if s in address]
            if refs:
                expressions[snake(prop)] = {"references": refs}
        configured.append({"address": addr, "mode": "managed", "type": kind, "name": res.name,
                           "provider_config_key": "aws", "expressions": expressions})
        changes.append({"address": addr, "mode": "managed", "type": kind, "name": res.name,
                        "provider_name": "registry.terraform.io/hashicorp/aws",
                        "change": {"actions": ["create"], "before": None, "after": values,
                                   "after_unknown": {}}})
    region = plan.config.get("aws:region", "us-east-1")
    return {
        "format_version": "1.2", "terraform_version": "1.9.0",
        "planned_values": {"root_module": {"resources": planned}},
        "resource_changes": changes,
        "configuration": {
            "provider_config": {"aws": {"name": "aws", "full_name":
                                        "registry.terraform.io/hashicorp/aws",
                                        "expressions": {"region": {"constant_value": region}}}},
            "root_module": {"resources": configured}},
    }


def run_checkov(plan_file: Path) -> dict[str, Any]:
    """checkov's terraform_plan results for ``plan_file`` (its JSON report)."""
    if not CHECKOV.exists():
        raise FileNotFoundError(f"{CHECKOV} not found: run `make setup` (the checkov venv)")
    cmd = [str(CHECKOV), "--framework", "terraform_plan", "-f", str(plan_file), "-o", "json",
           "--compact", "--skip-download", "--soft-fail"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if not out.stdout.strip().startswith(("{", "[")):
        raise RuntimeError(f"checkov failed (exit {out.returncode}): "
                           f"{(out.stderr or out.stdout)[-2000:]}")
    report = json.loads(out.stdout)
    return report[0] if isinstance(report, list) else report


def failed_checks(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(check id, resource address, check name) of every failed check."""
    return sorted((c["check_id"], c["resource"], c["check_name"])
                  for c in report.get("results", {}).get("failed_checks", []))


def passed_checks(report: dict[str, Any]) -> set[tuple[str, str]]:
    """(check id, resource address) of every passed check."""
    return {(c["check_id"], c["resource"])
            for c in report.get("results", {}).get("passed_checks", [])}


def waiver(check_id: str, resource: str) -> str | None:
    """Why a failed check is accepted, or None."""
    for (wid, pattern), why in WAIVERS.items():
        if wid == check_id and fnmatch.fnmatchcase(resource, pattern):
            return why
    return None


def unwaived(failed: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The failed checks no waiver covers."""
    return [f for f in failed if waiver(f[0], f[1]) is None]


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@app.command()
def main(
    stack: Annotated[str, typer.Option(help="Stack name: reads Pulumi.<stack>.yaml.")] = "prod",
    out: Annotated[Path | None, typer.Option(help="Where to write the plan JSON.")] = None,
    no_waivers: Annotated[bool, typer.Option(help="Report waived checks as failures.")] = False,
) -> None:
    """Convert STACK's mocks plan, run checkov on it, exit 1 on unwaived failures.

    Exit codes: 0 clean; 1 failed checks; 2 bad stack or config; 3 checkov could not run.
    """
    from infra import offline
    from infra.config import ConfigError

    try:
        doc = to_terraform_plan(offline.run(stack))
    except (ConfigError, FileNotFoundError, UnmappedType) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    path = out or Path(tempfile.gettempdir()) / f"checkov-plan-{stack}.json"
    path.write_text(json.dumps(doc, indent=1))
    try:
        report = run_checkov(path)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    failed = failed_checks(report)
    bad = failed if no_waivers else unwaived(failed)
    for check_id, resource, name in failed:
        why = None if no_waivers else waiver(check_id, resource)
        typer.echo(f"{'waived' if why else 'FAILED'} {check_id} {resource}: {name}")
    typer.echo(f"{path}: {report.get('summary', {}).get('passed', 0)} passed, {len(bad)} "
               f"failed, {len(failed) - len(bad)} waived (see docs/policies.md)")
    raise typer.Exit(1 if bad else 0)


if __name__ == "__main__":
    sys.exit(app())
