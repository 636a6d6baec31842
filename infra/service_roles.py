"""Service-linked roles the stack relies on, created when the account does not have them yet.

AWS creates a service-linked role the first time a service needs it, but the stack refers to
one before that happens: the KMS grant for encrypted node volumes names
``AWSServiceRoleForAutoScaling``, and KMS refuses a grant (or key policy) naming a principal
that does not exist yet, which is the case in a fresh account. So the
program looks the roles up (``iam:ListRoles`` by path) and declares the missing ones, which
the grant, the node groups and the database then depend on.

A service-linked role belongs to the account, not to the stack: every one declared here is
``retainOnDelete`` (a ``pulumi destroy`` leaves it; other stacks and services use it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

#: service principal -> role name AWS gives its service-linked role.
ROLES = {
    "autoscaling.amazonaws.com": "AWSServiceRoleForAutoScaling",
    "eks-nodegroup.amazonaws.com": "AWSServiceRoleForAmazonEKSNodegroup",
    "elasticloadbalancing.amazonaws.com": "AWSServiceRoleForElasticLoadBalancing",
    "rds.amazonaws.com": "AWSServiceRoleForRDS",
}
#: Short names used in logical resource names and by callers.
SHORT = {"autoscaling.amazonaws.com": "autoscaling",
         "eks-nodegroup.amazonaws.com": "eks-nodegroup",
         "elasticloadbalancing.amazonaws.com": "elasticloadbalancing",
         "rds.amazonaws.com": "rds"}


def role_path(service: str) -> str:
    """IAM path of a service's service-linked role: ``/aws-service-role/<service>/``."""
    return f"/aws-service-role/{service}/"


def role_arn(partition: str, account_id: str, service: str) -> str:
    """ARN of the service-linked role of ``service`` (whether or not it exists yet)."""
    return f"arn:{partition}:iam::{account_id}:role{role_path(service)}{ROLES[service]}"


def existing_services(services: Iterable[str]) -> set[str]:
    """Services whose service-linked role the account already has (one ListRoles per path)."""
    found = set()
    for service in services:
        result = aws.iam.get_roles(path_prefix=role_path(service))
        if ROLES[service] in set(result.names or ()):
            found.add(service)
    return found


@dataclass
class ServiceLinkedRolesArgs:
    """Inputs of :class:`ServiceLinkedRoles`."""

    #: ``lookup``: create the roles the account lacks; ``create``: declare all of them (a
    #: fresh account, or roles this stack already manages); ``existing``: create none.
    mode: str = "lookup"
    services: Sequence[str] = tuple(ROLES)


class ServiceLinkedRoles(pulumi.ComponentResource):
    """The service-linked roles this stack declares (``roles``: short name -> role)."""

    roles: dict[str, aws.iam.ServiceLinkedRole]

    def __init__(self, name: str, args: ServiceLinkedRolesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("labelstack:account:ServiceLinkedRoles", name, None, opts)
        unknown = sorted(set(args.services) - set(ROLES))
        if unknown:
            raise ValueError(f"no service-linked role known for {', '.join(unknown)}")
        if args.mode == "existing":
            missing: list[str] = []
        elif args.mode == "create":
            missing = list(args.services)
        else:
            present = existing_services(args.services)
            missing = [s for s in args.services if s not in present]
        # The role belongs to the account: never deleted with the stack.
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        self.roles = {
            SHORT[s]: aws.iam.ServiceLinkedRole(
                f"{name}-{SHORT[s]}", aws_service_name=s,
                description="Created by labelstack because the account had none yet; "
                "belongs to the account", opts=keep)
            for s in missing}
        self.register_outputs({"created": sorted(self.roles)})

    def wait_for(self, *short_names: str) -> list[pulumi.Resource]:
        """The declared roles among ``short_names`` (for ``depends_on``); empty when they
        already existed."""
        return [self.roles[n] for n in short_names if n in self.roles]
