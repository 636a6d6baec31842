"""The pack's policies, importable without starting the analyzer."""

from __future__ import annotations

from pulumi_policy import ResourceValidationPolicy, StackValidationPolicy

from policies.rules import ALL

NAME = "labelstack-hipaa"
DESCRIPTION = ("HIPAA Security Rule guardrails for labelstack: S3, KMS, IAM, VPC, EBS, RDS, "
               "EKS, ECR, ELB, CloudTrail, CloudWatch Logs, Secrets Manager and Kubernetes "
               "workloads.")


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """One pulumi_policy policy per rule, in rule order."""
    return [rule.policy() for rule in ALL]
