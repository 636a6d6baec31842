"""The rule model: one :class:`Rule` carries a check plus its compliance metadata and turns
itself into a ``pulumi_policy`` policy (resource or stack validation).

Checks are plain functions, so the pack, the offline evaluator and the tests share them:

* resource checks: ``check(props) -> Iterable[str]`` (one message per problem), run on every
  resource whose type token is in ``types``;
* stack checks: ``check(StackView) -> Iterable[tuple[PolicyResource, str]]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import _DictProxy, _ListProxy

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY
LOW, MEDIUM, HIGH, CRITICAL = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL

#: HIPAA Security Rule safeguards the rules cite (45 CFR Part 164 Subpart C).
SAFEGUARDS = {
    "164.308(a)(1)(ii)(D)": "Information system activity review",
    "164.308(a)(3)(i)": "Workforce security",
    "164.308(a)(4)(ii)(B)": "Access authorization",
    "164.308(a)(5)(ii)(B)": "Protection from malicious software",
    "164.308(a)(7)(ii)(A)": "Data backup plan",
    "164.308(a)(7)(ii)(B)": "Disaster recovery plan",
    "164.310(d)(2)(iv)": "Data backup and storage",
    "164.312(a)(1)": "Access control",
    "164.312(a)(2)(iv)": "Encryption and decryption",
    "164.312(b)": "Audit controls",
    "164.312(c)(1)": "Integrity",
    "164.312(c)(2)": "Mechanism to authenticate ePHI",
    "164.312(d)": "Person or entity authentication",
    "164.312(e)(1)": "Transmission security",
    "164.312(e)(2)(ii)": "Encryption in transit",
}

def plain(value: Any) -> Any:
    """The analyzer's props as plain dicts and lists.

    The analyzer wraps props in proxies that raise on values unknown during preview. Checks
    see those values as their sentinel strings instead: an input computed from another
    resource's output (a key ARN, a bucket id) is set, even before its value is known.
    """
    if isinstance(value, Mapping):
        target = value["__target"] if isinstance(value, _DictProxy) else value
        return {k: plain(v) for k, v in target.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = value["__target"] if isinstance(value, _ListProxy) else value
        return [plain(v) for v in items]
    return value


ResourceCheck = Callable[[Mapping[str, Any]], Iterable[str]]


@dataclass(frozen=True)
class StackView:
    """The stack's resources, indexed for joins."""

    resources: list[PolicyResource]

    def of_type(self, *types: str) -> list[PolicyResource]:
        """Resources whose type token is one of ``types``."""
        return [r for r in self.resources if r.resource_type in types]


StackCheck = Callable[[StackView], Iterable[tuple[PolicyResource, str]]]


@dataclass(frozen=True)
class Rule:
    """A compliance rule and its metadata."""

    name: str
    description: str
    service: str
    severity: Severity
    safeguard: str  # HIPAA Security Rule citation, a key of SAFEGUARDS
    mirrors: str  # AWS Config HIPAA conformance-pack rule or checkov ID it mirrors
    remediation: str
    check: Callable[..., Iterable[Any]]
    types: tuple[str, ...] = ()  # resource rules: type tokens checked; empty: a stack rule
    enforcement: EnforcementLevel = MANDATORY
    typed: bool = False  # resource check also takes the type token: check(props, type)

    @property
    def is_stack(self) -> bool:
        """Stack rules see every resource at once (joins, e.g. S3 settings to their bucket)."""
        return not self.types

    def framework(self) -> PolicyComplianceFramework:
        """The HIPAA citation in pulumi_policy's framework shape."""
        return PolicyComplianceFramework(name="HIPAA Security Rule", version="45 CFR 164",
                                         reference=self.safeguard,
                                         specification=SAFEGUARDS[self.safeguard])

    def run_resource(self, resource_type: str, props: Mapping[str, Any]) -> list[str]:
        """Messages for one resource (empty when the type is not checked or it complies)."""
        if resource_type not in self.types:
            return []
        if self.typed:
            return list(self.check(props, resource_type))
        return list(self.check(props))

    def run_stack(self, resources: list[PolicyResource]) -> list[tuple[PolicyResource, str]]:
        """(resource, message) for every violation in the stack."""
        return list(self.check(StackView(resources)))

    def policy(self) -> ResourceValidationPolicy | StackValidationPolicy:
        """The pulumi_policy object the analyzer serves."""
        common: dict[str, Any] = {
            "name": self.name, "description": self.description,
            "enforcement_level": self.enforcement, "severity": self.severity,
            "framework": self.framework(), "remediation_steps": self.remediation,
            "tags": [self.service, self.safeguard, self.mirrors]}
        if self.is_stack:
            def validate_stack(args: StackValidationArgs, report: ReportViolation) -> None:
                resources = list(args.resources)
                for res in resources:  # per-call objects: safe to unwrap in place
                    res.props = plain(res.props)
                for res, msg in self.run_stack(resources):
                    report(msg, res.urn)
            return StackValidationPolicy(validate=validate_stack, **common)

        def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
            for msg in self.run_resource(args.resource_type, plain(args.props)):
                report(msg, None)
        return ResourceValidationPolicy(validate=validate, **common)
