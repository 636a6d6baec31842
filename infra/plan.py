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


def _top_component(res: PlannedResource, by_key: dict[str, PlannedResource]) -> str:
    """The logical name of the top-level component a resource belongs to."""
    name, key = res.name, res.parent_key
    while key and key in by_key:
        parent = by_key[key]
        if parent.type.startswith("pulumi:pulumi:Stack"):
            break
        name, key = parent.name, parent.parent_key
    return name if key or res.parent_key else "(stack)"


def _short_type(token: str) -> str:
    """``aws:s3/bucketVersioning:BucketVersioning`` -> ``aws s3 BucketVersioning``."""
    pkg, _, rest = token.partition(":")
    module, _, kind = rest.partition(":")
    return f"{pkg} {module.split('/')[0]} {kind}"


def posture_lines(plan: Plan) -> list[tuple[str, str]]:
    """The effective posture of the stack's profile and its explicit relaxations."""
    from infra import config as C

    prefix = f"{C.NAMESPACE}:"
    raw = {k[len(prefix):]: C._decode(k[len(prefix):], v) for k, v in plan.config.items()
           if k.startswith(prefix)}
    cfg = C.parse(raw)
    pos = cfg.posture
    rows = [
        ("profile", cfg.profile),
        ("data protection", "protected + retained on destroy" if pos.protect_data
         else ("buckets emptied on destroy" if pos.force_destroy else "not protected")),
        ("availability", f"{pos.min_azs}+ AZs, database multi-AZ={pos.multi_az_db}, "
                         f"deletion protection={pos.deletion_protection}"),
        ("retention", f"database backups {pos.db_backup_days} d, logs >= "
                      f"{pos.min_log_retention_days} d"),
        ("nodes", f"system min {pos.system_min_size}, GPU min {pos.gpu_min_size}"),
        ("egress", cfg.egress_mode), ("ingress", cfg.ingress_mode),
        ("image access", cfg.image_access),
        ("cluster API", "private" if not cfg.cluster_public_access_cidrs else
         "public for " + ", ".join(cfg.cluster_public_access_cidrs)),
    ]
    return rows


def _report(console: Console, plan: Plan, violations: list[Any], seconds: float,
            rules: int) -> None:
    """Posture, then the resources grouped by component, violations, and the verdict."""
    from rich.panel import Panel

    custom = [r for r in plan.resources if r.custom]
    posture = Table.grid(padding=(0, 2))
    posture.add_column(style="bold")
    posture.add_column()
    for label, value in posture_lines(plan):
        posture.add_row(label, value)
    console.print(Panel(posture, title=f"stack {plan.stack}: effective posture",
                        title_align="left"))
    by_key = {r.key: r for r in plan.resources}
    groups: dict[str, list[PlannedResource]] = {}
    for res in custom:
        groups.setdefault(_top_component(res, by_key), []).append(res)
    for component, members in groups.items():
        table = Table(title=f"{component} ({len(members)})", title_justify="left",
                      show_header=False, box=None, padding=(0, 1), expand=False)
        table.add_column("name", overflow="fold", ratio=3)
        table.add_column("type", overflow="fold", ratio=3, style="dim")
        table.add_column("key settings", overflow="fold", ratio=4)
        for res in sorted(members, key=lambda r: (r.type, r.name)):
            table.add_row(res.name, _short_type(res.type), key_settings(res, plan))
        console.print(table)
    if violations:
        vt = Table(title="policy violations", title_justify="left")
        for col in ("enforcement", "rule", "resource", "message"):
            vt.add_column(col, overflow="fold")
        for v in sorted(violations, key=lambda v: (not v.mandatory, v.rule, v.resource)):
            style = "bold red" if v.mandatory else "yellow"
            vt.add_row(f"[{style}]{v.enforcement}[/]", v.rule, v.resource, v.message)
        console.print(vt)
    mandatory = sum(v.mandatory for v in violations)
    verdict = "[bold red]FAIL[/]" if mandatory else "[bold green]PASS[/]"
    console.print(f"{verdict}: {rules} rules evaluated, {len(custom)} resources in "
                  f"{len(groups)} components: {mandatory} mandatory, "
                  f"{len(violations) - mandatory} advisory violations ({seconds:.0f} s)")


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
        from policies.pack import policies

        out = Console()
        width = min(out.width, 100) if out.is_terminal else 100
        _report(Console(width=width), plan, violations, seconds, len(policies()))
    raise typer.Exit(EXIT_VIOLATIONS if mandatory else EXIT_OK)


if __name__ == "__main__":
    app()
