"""RDS PostgreSQL for Label Studio: private, TLS-only, CMK-encrypted, IAM auth, monitored,
logs exported to encrypted groups, posture by profile, and a master credential that only
RDS and Secrets Manager ever hold."""

from __future__ import annotations

import pytest

from infra.config import PROFILES, ConfigError
from infra.database import LOG_EXPORTS
from infra.offline import Plan
from tests.compute_helpers import LOG_GROUP, RDS, attached_policies, one, role_by_arn, trust

ENGINE = {"prod": "17", "dev": "16", "staging": "16", "ephemeral": "16"}


def _params(plan: Plan) -> dict[str, str]:
    (group,) = plan.of_type("aws:rds/parameterGroup:ParameterGroup")
    return {p["name"]: p["value"] for p in group.inputs["parameters"]}


def test_engine_and_parameter_family(each_stack: Plan) -> None:
    db = one(each_stack, RDS).inputs
    assert db["engine"] == "postgres"
    assert db["engineVersion"] == ENGINE[each_stack.stack]
    (group,) = each_stack.of_type("aws:rds/parameterGroup:ParameterGroup")
    assert group.inputs["family"] == f"postgres{ENGINE[each_stack.stack]}"
    assert db["parameterGroupName"] == f"{group.name}-0123abcd"


def test_tls_is_forced(each_stack: Plan) -> None:
    assert _params(each_stack)["rds.force_ssl"] == "1"


def test_private_data_subnets_only(each_stack: Plan) -> None:
    db = one(each_stack, RDS).inputs
    assert db["publiclyAccessible"] is False
    (subnets,) = each_stack.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert db["dbSubnetGroupName"] == f"{subnets.name}-0123abcd"
    assert subnets.inputs["subnetIds"] == each_stack.outputs["dataSubnetIds"]
    assert not set(subnets.inputs["subnetIds"]) & set(each_stack.outputs["appSubnetIds"])


def test_everything_encrypted_with_the_cmk(each_stack: Plan) -> None:
    db = one(each_stack, RDS).inputs
    key = each_stack.outputs["dataKeyArn"]
    assert db["storageEncrypted"] is True
    assert db["kmsKeyId"] == key
    assert db["performanceInsightsEnabled"] is True
    assert db["performanceInsightsKmsKeyId"] == key
    assert db["masterUserSecretKmsKeyId"] == key


def test_iam_auth_monitoring_logs_upgrades_tags(each_stack: Plan) -> None:
    db = one(each_stack, RDS)
    inputs = db.inputs
    assert inputs["iamDatabaseAuthenticationEnabled"] is True
    assert inputs["autoMinorVersionUpgrade"] is True
    assert inputs["allowMajorVersionUpgrade"] is False
    assert inputs["copyTagsToSnapshot"] is True
    assert inputs["tags"]["DataClassification"] == "phi"
    assert inputs["monitoringInterval"] in (1, 5, 10, 15, 30, 60)
    role = role_by_arn(each_stack, inputs["monitoringRoleArn"])
    assert trust(role)["Statement"][0]["Principal"] == {"Service": "monitoring.rds.amazonaws.com"}
    assert attached_policies(each_stack, role) == {"AmazonRDSEnhancedMonitoringRole"}
    assert sorted(inputs["enabledCloudwatchLogsExports"]) == sorted(LOG_EXPORTS)
    for kind in LOG_EXPORTS:
        name = f"/aws/rds/instance/{inputs['identifier']}/{kind}"
        (group,) = [g for g in each_stack.of_type(LOG_GROUP) if g.inputs["name"] == name]
        assert group.inputs["kmsKeyId"] == each_stack.outputs["logsKeyArn"]
        assert group.inputs["retentionInDays"] >= PROFILES[each_stack.stack].min_log_retention_days
        assert group.name in db.depends_on  # created before RDS would create it unencrypted


def test_posture_by_profile(each_stack: Plan) -> None:
    db = one(each_stack, RDS)
    inputs, posture = db.inputs, PROFILES[each_stack.stack]
    assert inputs["multiAz"] is posture.multi_az_db
    assert inputs["deletionProtection"] is posture.deletion_protection
    assert inputs["backupRetentionPeriod"] == posture.db_backup_days >= 7
    assert db.protect is db.retain_on_delete is posture.protect_data
    if posture.deletion_protection:
        assert inputs["skipFinalSnapshot"] is False
        assert inputs["finalSnapshotIdentifier"]
    else:
        assert inputs["skipFinalSnapshot"] is True


def test_prod_is_resilient(stack_plan) -> None:
    db = one(stack_plan("prod"), RDS)
    assert db.inputs["multiAz"] and db.inputs["deletionProtection"] and db.protect
    assert db.inputs["backupRetentionPeriod"] == 35
    assert db.inputs["finalSnapshotIdentifier"] == "labelstack-prod-final"


def test_master_credential_is_managed_by_rds(each_stack: Plan) -> None:
    db = one(each_stack, RDS).inputs
    assert db["manageMasterUserPassword"] is True
    for key in ("password", "passwordWo", "passwordWoVersion"):
        assert key not in db
    assert each_stack.outputs["dbSecretArn"].startswith("arn:aws:secretsmanager:")


def test_outputs_name_the_endpoint_and_secret(each_stack: Plan) -> None:
    out = each_stack.outputs
    assert out["dbEndpoint"].endswith(":5432")
    assert out["dbSecurityGroupId"] == one(each_stack, RDS).inputs["vpcSecurityGroupIds"][0]


@pytest.mark.parametrize("value", ["15", "18"])
def test_unsupported_engine_version_is_refused(plan_with, value: str) -> None:
    with pytest.raises(ConfigError, match=rf'labelstack:dbEngineVersion: got "{value}"; '
                       r"major version must be one of 16, 17"):
        plan_with("dev", dbEngineVersion=value)


def test_pgaudit_logs_roles_and_ddl_without_parameters(each_stack: Plan) -> None:
    params = _params(each_stack)
    assert "pgaudit" in params["shared_preload_libraries"].split(",")
    # RDS's default library stays loaded (Database Insights' top SQL reads it)
    assert "pg_stat_statements" in params["shared_preload_libraries"].split(",")
    assert set(params["pgaudit.log"].split(",")) == {"role", "ddl"}
    assert params["pgaudit.log_parameter"] == "0"
    (group,) = each_stack.of_type("aws:rds/parameterGroup:ParameterGroup")
    static = {p["name"]: p["applyMethod"] for p in group.inputs["parameters"]}
    assert static["shared_preload_libraries"] == "pending-reboot"


def test_slow_statements_logged_without_bind_parameters(each_stack: Plan) -> None:
    params = _params(each_stack)
    assert int(params["log_min_duration_statement"]) > 0
    assert params["log_parameter_max_length"] == "0"
    assert params["log_parameter_max_length_on_error"] == "0"


def test_database_insights_mode_is_explicit(each_stack: Plan) -> None:
    db = one(each_stack, RDS).inputs
    assert db["databaseInsightsMode"] == "standard"
    assert db["performanceInsightsEnabled"] is True
    assert db["performanceInsightsKmsKeyId"] == each_stack.outputs["dataKeyArn"]
