"""Label Studio's PostgreSQL on RDS, private and encrypted.

Private data subnets; a security group that admits 5432 from the EKS cluster security group
only (no CIDR rule, no egress); ``rds.force_ssl=1``; storage, Performance Insights and the
master secret encrypted with the CMK; IAM authentication; enhanced monitoring; Database
Insights in its standard mode (set explicitly: the Performance Insights console reaches end of
life and instances move to Database Insights); postgresql and upgrade logs to KMS-encrypted
log groups created here with retention. The parameter group loads ``pgaudit`` for role and DDL
statements (no parameter values) and logs slow statements without their bind parameters.
``CREATE EXTENSION pgaudit`` runs once in the database (docs/compute-plane.md). The master password
is generated and rotated by RDS in Secrets Manager (``manageMasterUserPassword``): it never
exists in config, state or any resource input. Posture (Multi-AZ, deletion protection, final
snapshot, backup days, ``protect``) comes from the environment profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam_documents as iam
from infra.cluster import managed_policy

PORT = 5432
DB_NAME = "labelstudio"
#: Master user name (not a secret; its password lives only in Secrets Manager).
MASTER_USER = "labelstudio_admin"
LOG_EXPORTS = ("postgresql", "upgrade")
#: Statements slower than this (ms) are logged (text only: bind parameters are not).
SLOW_STATEMENT_MS = 1000
#: Server parameters: TLS only; connection audit lines; pgaudit session logging of role and
#: DDL statements (never statement parameters, which carry PHI); slow statements without
#: their parameters. ``shared_preload_libraries`` keeps RDS's default pg_stat_statements.
PARAMETERS = {
    "rds.force_ssl": "1",
    "log_connections": "1",
    "log_disconnections": "1",
    "shared_preload_libraries": "pg_stat_statements,pgaudit",
    "pgaudit.log": "role,ddl",
    "pgaudit.log_parameter": "0",
    "pgaudit.log_catalog": "0",
    "log_min_duration_statement": str(SLOW_STATEMENT_MS),
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
}
#: Database Insights mode: ``standard`` (``advanced`` needs 465 days of Performance Insights
#: retention and is billed per vCPU).
DATABASE_INSIGHTS_MODE = "standard"
#: RDS CA for server certificates (Label Studio uses sslmode=verify-ca with the RDS bundle).
CA_CERT = "rds-ca-rsa2048-g1"
BACKUP_WINDOW = "03:00-04:00"
MAINTENANCE_WINDOW = "sun:04:30-sun:05:30"
#: Performance Insights retention (days); 7 is the free tier.
PI_RETENTION_DAYS = 7


@dataclass
class DatabaseArgs:
    """Inputs of :class:`Database`."""

    identifier: str
    engine_version: str
    instance_class: str
    allocated_storage: int
    vpc_id: pulumi.Input[str]
    #: Private data subnets.
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    #: The only source admitted on 5432: the EKS cluster security group.
    client_security_group_id: pulumi.Input[str]
    #: CMK for storage, Performance Insights and the master secret.
    data_key_arn: pulumi.Input[str]
    #: CMK of the log groups.
    logs_key_arn: pulumi.Input[str]
    log_retention_days: int
    backup_days: int
    ctx: iam.AwsContext
    multi_az: bool = True
    deletion_protection: bool = True
    #: pulumi ``protect`` + ``retainOnDelete`` (prod).
    protect: bool = True
    #: Enhanced monitoring interval in seconds (1, 5, 10, 15, 30, 60).
    monitoring_interval: int = 60
    #: Created before the instance (the RDS service-linked role when the stack creates it).
    wait_for: Sequence[pulumi.Resource] = ()


def parameter_family(engine_version: str) -> str:
    """``postgres16`` for ``16`` or ``16.4``."""
    return f"postgres{engine_version.split('.')[0]}"


class Database(pulumi.ComponentResource):
    """RDS PostgreSQL with its subnet group, security group, parameter group and logs."""

    address: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    #: Secrets Manager ARN of the RDS-managed master credential.
    master_secret_arn: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:compute:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        subnets = aws.rds.SubnetGroup(f"{name}-subnets", description="Private data subnets",
                                      subnet_ids=args.subnet_ids, opts=child)
        sg = aws.ec2.SecurityGroup(f"{name}-sg", vpc_id=args.vpc_id,
                                   description="PostgreSQL: 5432 from the EKS cluster SG only",
                                   opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-sg-from-cluster", security_group_id=sg.id, ip_protocol="tcp",
            from_port=PORT, to_port=PORT,
            referenced_security_group_id=args.client_security_group_id,
            description="PostgreSQL from EKS nodes and pods (cluster security group)",
            opts=child)
        params = aws.rds.ParameterGroup(
            f"{name}-params", family=parameter_family(args.engine_version),
            description="labelstack PostgreSQL: TLS only, connection, pgaudit and slow-query "
            "logging",
            parameters=[aws.rds.ParameterGroupParameterArgs(name=k, value=v,
                                                            apply_method="pending-reboot")
                        for k, v in PARAMETERS.items()],
            opts=child)
        monitoring = aws.iam.Role(
            f"{name}-monitoring-role", description="RDS enhanced monitoring",
            assume_role_policy=iam.to_json(
                iam.assume_role_for_service("monitoring.rds.amazonaws.com", args.ctx)),
            opts=child)
        monitoring_policy = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-role-policy", role=monitoring.name,
            policy_arn=managed_policy(args.ctx, "service-role/AmazonRDSEnhancedMonitoringRole"),
            opts=child)
        # RDS would create these unencrypted and kept forever; create them first.
        log_groups = [aws.cloudwatch.LogGroup(
            f"{name}-logs-{kind}", name=f"/aws/rds/instance/{args.identifier}/{kind}",
            retention_in_days=args.log_retention_days, kms_key_id=args.logs_key_arn,
            opts=child) for kind in LOG_EXPORTS]

        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=args.identifier,
            engine="postgres",
            engine_version=args.engine_version,
            instance_class=args.instance_class,
            allocated_storage=args.allocated_storage,
            max_allocated_storage=min(args.allocated_storage * 4, 16384),
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=args.data_key_arn,
            db_name=DB_NAME,
            username=MASTER_USER,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=args.data_key_arn,
            iam_database_authentication_enabled=True,
            port=PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[sg.id],
            publicly_accessible=False,
            parameter_group_name=params.name,
            ca_cert_identifier=CA_CERT,
            multi_az=args.multi_az,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=not args.deletion_protection,
            final_snapshot_identifier=(f"{args.identifier}-final"
                                       if args.deletion_protection else None),
            delete_automated_backups=not args.deletion_protection,
            backup_retention_period=args.backup_days,
            backup_window=BACKUP_WINDOW,
            maintenance_window=MAINTENANCE_WINDOW,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            apply_immediately=not args.deletion_protection,
            database_insights_mode=DATABASE_INSIGHTS_MODE,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=args.data_key_arn,
            performance_insights_retention_period=PI_RETENTION_DAYS,
            monitoring_interval=args.monitoring_interval,
            monitoring_role_arn=monitoring.arn,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            # Label Studio's tables hold task data and annotations.
            tags={"DataClassification": "phi"},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect,
                                        retain_on_delete=args.protect,
                                        depends_on=[monitoring_policy, *log_groups,
                                                    *args.wait_for]))

        self.address = self.instance.address
        self.endpoint = self.instance.endpoint
        self.security_group_id = sg.id
        self.master_secret_arn = self.instance.master_user_secrets.apply(
            lambda s: s[0].secret_arn if s else None)
        self.register_outputs({"endpoint": self.endpoint,
                               "master_secret_arn": self.master_secret_arn})
