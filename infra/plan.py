"""Offline check of a stack: ``python -m infra.plan --stack prod [--json] [--set key=value]``.

Runs the program under Pulumi mocks (:func:`infra.offline.run`), prints what the stack would
create with its key settings, evaluates the whole policy pack on it and exits non-zero on any
mandatory violation. No cloud account, no Pulumi CLI.

Exit codes: 0 no mandatory violation; 1 mandatory violations; 2 bad configuration or
arguments.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from infra.config import ConfigError
from infra.offline import Plan, PlannedResource

app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])
EXIT_OK, EXIT_VIOLATIONS, EXIT_CONFIG = 0, 1, 2

_S3_SETTINGS = {
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        lambda i: "sse=" + str(_dig(i, "rules", "applyServerSideEncryptionByDefault",
                                    "sseAlgorithm")),
    "aws:s3/bucketVersioning:BucketVersioning":
        lambda i: "versioning=" + str(_dig(i, "versioningConfiguration", "status")),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock":
        lambda i: "public-access-block=" + ("all" if all(
            i.get(k) is True for k in ("blockPublicAcls", "blockPublicPolicy",
                                       "ignorePublicAcls", "restrictPublicBuckets"))
            else "partial"),
    "aws:s3/bucketLogging:BucketLogging": lambda i: "access-logs=on",
    "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration": lambda i: "cors=on",
}

#: type token -> (label, camelCase path) pairs shown in the table.
_SETTINGS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "aws:kms/key:Key": [("rotation", ("enableKeyRotation",)),
                        ("deletion-window", ("deletionWindowInDays",))],
    "aws:rds/instance:Instance": [
        ("class", ("instanceClass",)), ("engine", ("engineVersion",)),
        ("encrypted", ("storageEncrypted",)), ("multi-az", ("multiAz",)),
        ("public", ("publiclyAccessible",)), ("backups", ("backupRetentionPeriod",)),
        ("deletion-protection", ("deletionProtection",))],
    "aws:eks/cluster:Cluster": [
        ("version", ("version",)), ("public", ("vpcConfig", "endpointPublicAccess")),
        ("private", ("vpcConfig", "endpointPrivateAccess")),
        ("public-cidrs", ("vpcConfig", "publicAccessCidrs")),
        ("auth", ("accessConfig", "authenticationMode"))],
    "aws:eks/nodeGroup:NodeGroup": [("instances", ("instanceTypes",)),
                                    ("min", ("scalingConfig", "minSize")),
                                    ("max", ("scalingConfig", "maxSize"))],
    "aws:ec2/vpc:Vpc": [("cidr", ("cidrBlock",))],
    "aws:ec2/subnet:Subnet": [("cidr", ("cidrBlock",)), ("az", ("availabilityZone",)),
                              ("public-ip", ("mapPublicIpOnLaunch",))],
    "aws:ec2/vpcEndpoint:VpcEndpoint": [("service", ("serviceName",)),
                                        ("type", ("vpcEndpointType",))],
    "aws:ec2/launchTemplate:LaunchTemplate": [
        ("imds", ("metadataOptions", "httpTokens")),
        ("disk-encrypted", ("blockDeviceMappings", "ebs", "encrypted"))],
    "aws:cloudwatch/logGroup:LogGroup": [("retention", ("retentionInDays",)),
                                         ("kms", ("kmsKeyId",))],
    "aws:cloudtrail/trail:Trail": [("multi-region", ("isMultiRegionTrail",)),
                                   ("validation", ("enableLogFileValidation",))],
    "aws:ecr/repository:Repository": [("tags", ("imageTagMutability",)),
                                      ("scan", ("imageScanningConfiguration", "scanOnPush"))],
}


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def key_settings(res: PlannedResource, plan: Plan) -> str:
    """A short ``label=value`` summary of the settings that matter for ``res``."""
    if res.type in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
        parts = []
        for other in plan.resources:
            fmt = _S3_SETTINGS.get(other.type)
            if fmt and res.name in other.property_deps.get("bucket", set()):
                parts.append(fmt(other.inputs))
        if res.inputs.get("forceDestroy"):
            parts.append("force-destroy")
        return ", ".join(sorted(parts))
    parts = []
    for label, path in _SETTINGS.get(res.type, []):
        value = _dig(res.inputs, *path)
        if value is not None:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            parts.append(f"{label}={value}")
    return ", ".join(parts)


def _parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set {item!r}: expected key=value, e.g. "
                                     "--set egressMode=nat", param_hint="--set")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _report(console: Console, plan: Plan, violations: list[Any], seconds: float) -> None:
    table = Table(title=f"stack {plan.stack}: {sum(r.custom for r in plan.resources)} resources",
                  show_lines=False)
    for col in ("type", "name", "key settings"):
        table.add_column(col, overflow="fold")
    for res in sorted((r for r in plan.resources if r.custom), key=lambda r: (r.type, r.name)):
        table.add_row(res.type, res.name, key_settings(res, plan))
    console.print(table)
    if violations:
        vt = Table(title="policy violations")
        for col in ("enforcement", "rule", "resource", "message"):
            vt.add_column(col, overflow="fold")
        for v in sorted(violations, key=lambda v: (not v.mandatory, v.rule, v.resource)):
            style = "bold red" if v.mandatory else "yellow"
            vt.add_row(f"[{style}]{v.enforcement}[/]", v.rule, v.resource, v.message)
        console.print(vt)
    mandatory = sum(v.mandatory for v in violations)
    verdict = "[bold red]FAIL[/]" if mandatory else "[bold green]PASS[/]"
    console.print(f"{verdict}: {mandatory} mandatory, {len(violations) - mandatory} advisory "
                  f"violation(s); {seconds:.1f} s")


@app.command(epilog="Exit codes: 0 no mandatory violation; 1 mandatory violations; 2 bad "
             "configuration or arguments.")
def main(
    stack: Annotated[str, typer.Option(help="Stack name: reads Pulumi.<stack>.yaml.")] = "dev",
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override key=value (JSON values allowed), repeatable.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON document (resources, violations, verdict) for CI.")
    ] = False,
    policy_config: Annotated[Path | None, typer.Option(
        help="Per-rule enforcement, the --policy-pack-config JSON shape.")] = None,
) -> None:
    """Plan STACK under mocks, evaluate the policy pack, exit 1 on mandatory violations."""
    from infra import offline
    from policies.offline import evaluate, load_config

    start = time.perf_counter()
    err = Console(stderr=True)
    try:
        overrides = _parse_sets(set_ or [])
        pack_config = load_config(policy_config)
        plan = offline.run(stack, overrides)
        violations = evaluate(plan, pack_config)
    except (ConfigError, FileNotFoundError, ValueError, typer.BadParameter) as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    seconds = time.perf_counter() - start
    mandatory = [v for v in violations if v.mandatory]
    if as_json:
        doc = {"stack": stack, "passed": not mandatory, "seconds": round(seconds, 2),
               "resources": [{"type": r.type, "name": r.name, "settings": key_settings(r, plan)}
                             for r in plan.resources if r.custom],
               "violations": [v.to_dict() for v in violations],
               "summary": {"mandatory": len(mandatory),
                           "advisory": len(violations) - len(mandatory)}}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        out = Console()
        _report(out if out.is_terminal else Console(width=160), plan, violations, seconds)
    raise typer.Exit(EXIT_VIOLATIONS if mandatory else EXIT_OK)


if __name__ == "__main__":
    app()
