"""Rule modules, one per service. :data:`ALL` lists every rule of the pack."""

from __future__ import annotations

from policies.model import Rule
from policies.rules import (
    cloudtrail,
    ebs,
    ecr,
    eks,
    elb,
    iam,
    kms,
    kubernetes,
    logs,
    network,
    rds,
    s3,
    secrets,
)

ALL: list[Rule] = [
    *s3.RULES, *kms.RULES, *iam.RULES, *network.RULES, *ebs.RULES, *rds.RULES, *eks.RULES,
    *ecr.RULES, *elb.RULES, *cloudtrail.RULES, *logs.RULES, *secrets.RULES, *kubernetes.RULES,
]


def by_name() -> dict[str, Rule]:
    """Rules keyed by name."""
    return {r.name: r for r in ALL}
