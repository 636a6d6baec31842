"""RDS PostgreSQL: encrypted, private, backed up, TLS only, with prod-grade protection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from policies.model import CRITICAL, HIGH, LOW, MEDIUM, Rule
from policies.rules._util import as_list, environment, strict

INSTANCE = ("aws:rds/instance:Instance",)
PARAMS = ("aws:rds/parameterGroup:ParameterGroup",)
MIN_BACKUP_DAYS = 7
#: pgaudit session classes every PostgreSQL parameter group must log.
PGAUDIT_CLASSES = ("role", "ddl")


def check_encrypted(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("storageEncrypted") is not True:
        yield "storageEncrypted is not true"


def check_cmk(props: Mapping[str, Any]) -> Iterator[str]:
    if not props.get("kmsKeyId"):
        yield "no customer-managed kmsKeyId (storage uses the AWS managed key or none)"


def check_public(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("publiclyAccessible") is True:
        yield "publiclyAccessible is true"


def check_backups(props: Mapping[str, Any]) -> Iterator[str]:
    days = int(props.get("backupRetentionPeriod") or 0)
    if days < MIN_BACKUP_DAYS:
        yield f"backupRetentionPeriod is {days}; keep at least {MIN_BACKUP_DAYS} days"


def check_deletion_protection(props: Mapping[str, Any]) -> Iterator[str]:
    if strict(props) and props.get("deletionProtection") is not True:
        yield f"deletionProtection is off in a {environment(props)} stack"


def check_multi_az(props: Mapping[str, Any]) -> Iterator[str]:
    if strict(props) and props.get("multiAz") is not True:
        yield f"multiAz is off in a {environment(props)} stack"


def check_final_snapshot(props: Mapping[str, Any]) -> Iterator[str]:
    if strict(props) and props.get("skipFinalSnapshot") is True:
        yield f"skipFinalSnapshot is true in a {environment(props)} stack"


def check_log_exports(props: Mapping[str, Any]) -> Iterator[str]:
    if "postgresql" not in as_list(props.get("enabledCloudwatchLogsExports")):
        yield "enabledCloudwatchLogsExports does not include postgresql"


def check_minor_upgrades(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("autoMinorVersionUpgrade") is False:
        yield "autoMinorVersionUpgrade is false"


def check_password(props: Mapping[str, Any]) -> Iterator[str]:
    if props.get("password") and not props.get("manageMasterUserPassword"):
        yield ("master password is a resource input (kept in state); use "
               "manageMasterUserPassword")


def check_force_ssl(props: Mapping[str, Any]) -> Iterator[str]:
    if not str(props.get("family", "")).startswith("postgres"):
        return
    for p in as_list(props.get("parameters")):
        if p.get("name") == "rds.force_ssl" and str(p.get("value")) != "1":
            yield f"rds.force_ssl is {p.get('value')}; clients could connect without TLS"


def _parameters(props: Mapping[str, Any]) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value")) for p in as_list(props.get("parameters"))
            if isinstance(p, Mapping)}


def check_pgaudit(props: Mapping[str, Any]) -> Iterator[str]:
    if not str(props.get("family", "")).startswith("postgres"):
        return
    params = _parameters(props)
    libraries = {x.strip() for x in params.get("shared_preload_libraries", "").split(",")}
    if "pgaudit" not in libraries:
        yield "shared_preload_libraries does not load pgaudit"
        return
    classes = {x.strip().lower() for x in params.get("pgaudit.log", "").split(",")}
    missing = set() if "all" in classes else set(PGAUDIT_CLASSES) - classes
    if missing:
        yield f"pgaudit.log does not include {', '.join(sorted(missing))}"
    if params.get("pgaudit.log_parameter", "0").lower() not in ("0", "off", "false"):
        yield "pgaudit.log_parameter writes statement parameters (PHI) into the log"


def check_public_snapshot_copy(props: Mapping[str, Any]) -> Iterator[str]:
    if strict(props) and props.get("copyTagsToSnapshot") is not True:
        yield f"copyTagsToSnapshot is off in a {environment(props)} stack"


_S = "rds"
RULES = [
    Rule("rds-storage-encrypted", "RDS storage is encrypted.", _S, CRITICAL,
         "164.312(a)(2)(iv)", "AWS Config rds-storage-encrypted", "Set storageEncrypted true "
         "(a new instance: encryption cannot be turned on in place).", check_encrypted,
         types=INSTANCE),
    Rule("rds-cmk", "RDS storage uses a customer-managed KMS key.", _S, MEDIUM,
         "164.312(a)(2)(iv)", "AWS Config rds-storage-encrypted (kmsKeyId parameter)",
         "Set kmsKeyId to the stack's data key.",
         check_cmk, types=INSTANCE),
    Rule("rds-not-public", "RDS instances are not publicly accessible.", _S, CRITICAL,
         "164.312(a)(1)", "AWS Config rds-instance-public-access-check",
         "Set publiclyAccessible false.", check_public, types=INSTANCE),
    Rule("rds-backup-retention", f"RDS keeps automated backups at least {MIN_BACKUP_DAYS} "
         "days.", _S, HIGH, "164.308(a)(7)(ii)(A)", "AWS Config db-instance-backup-enabled",
         f"Set backupRetentionPeriod to {MIN_BACKUP_DAYS} or more.", check_backups,
         types=INSTANCE),
    Rule("rds-deletion-protection", "prod and staging databases have deletion protection.",
         _S, HIGH, "164.308(a)(7)(ii)(A)",
         "AWS Config rds-instance-deletion-protection-enabled",
         "Set deletionProtection true.", check_deletion_protection, types=INSTANCE),
    Rule("rds-multi-az", "prod and staging databases are Multi-AZ.", _S, MEDIUM,
         "164.308(a)(7)(ii)(B)", "AWS Config rds-multi-az-support", "Set multiAz true.",
         check_multi_az, types=INSTANCE),
    Rule("rds-final-snapshot", "prod and staging databases take a final snapshot on delete.",
         _S, MEDIUM, "164.308(a)(7)(ii)(A)", "custom (RDS final snapshot on delete)",
         "Set skipFinalSnapshot false and a finalSnapshotIdentifier.", check_final_snapshot,
         types=INSTANCE),
    Rule("rds-log-exports", "PostgreSQL logs go to CloudWatch Logs.", _S, MEDIUM,
         "164.312(b)", "checkov CKV_AWS_129", "Set enabledCloudwatchLogsExports "
         "[\"postgresql\"].", check_log_exports, types=INSTANCE),
    Rule("rds-minor-upgrades", "RDS applies minor engine (security) upgrades.", _S, LOW,
         "164.308(a)(5)(ii)(B)", "checkov CKV_AWS_226", "Leave autoMinorVersionUpgrade true.",
         check_minor_upgrades, types=INSTANCE),
    Rule("rds-managed-master-password", "The master password lives in Secrets Manager, not in "
         "the program or its state.", _S, HIGH, "164.312(d)",
         "custom (RDS managed master password)", "Set manageMasterUserPassword true and drop "
         "password.", check_password, types=INSTANCE),
    Rule("rds-force-ssl", "PostgreSQL parameter groups never turn rds.force_ssl off.", _S,
         HIGH, "164.312(e)(2)(ii)", "custom (RDS PostgreSQL rds.force_ssl)",
         "Set rds.force_ssl to 1.", check_force_ssl, types=PARAMS),
    Rule("rds-pgaudit", "PostgreSQL parameter groups load pgaudit and log role and DDL "
         "statements, never statement parameters.", _S, HIGH, "164.312(b)",
         "checkov CKV2_AWS_30 (PostgreSQL query logging)",
         "Set shared_preload_libraries to include pgaudit, pgaudit.log to role,ddl and "
         "pgaudit.log_parameter to 0.", check_pgaudit, types=PARAMS),
    Rule("rds-copy-tags-to-snapshots", "prod and staging snapshots carry the data "
         "classification tags.", _S, LOW, "164.310(d)(2)(iv)", "checkov CKV2_AWS_60",
         "Set copyTagsToSnapshot true.", check_public_snapshot_copy, types=INSTANCE),
]
