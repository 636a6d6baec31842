"""Evaluate the whole pack on an :class:`infra.offline.Plan`, without the analyzer.

Builds the same ``ResourceValidationArgs`` / ``StackValidationArgs`` objects the analyzer
would, calls each policy's ``validate`` and collects the violations. Enforcement follows the
rule default, overridable per rule with the same shape as ``--policy-pack-config``
(``{"rule-name": "advisory"}`` or ``{"rule-name": {"enforcementLevel": "disabled"}}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from infra.offline import PROJECT, Plan, PlannedResource
from policies.model import Rule
from policies.rules import ALL


@dataclass(frozen=True)
class Violation:
    """One policy violation."""

    rule: str
    enforcement: str  # mandatory | advisory
    severity: str
    resource_type: str
    resource: str  # logical name ("" for the stack as a whole)
    message: str

    @property
    def mandatory(self) -> bool:
        """True when the violation blocks a deployment."""
        return self.enforcement == EnforcementLevel.MANDATORY.value

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return asdict(self)


def urn(stack: str, res: PlannedResource) -> str:
    """The resource's URN (parent chain left out: names are unique per type here)."""
    return f"urn:pulumi:{stack}::{PROJECT}::{res.type}::{res.name}"


def _opts(stack: str, res: PlannedResource, by_name: Mapping[str, PlannedResource]
          ) -> PolicyResourceOptions:
    parent = by_name.get(res.parent) if res.parent else None
    return PolicyResourceOptions(res.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [],
                                 urn(stack, parent) if parent else None)


def stack_resources(plan: Plan) -> list[PolicyResource]:
    """The plan as the analyzer's ``PolicyResource`` list, with dependencies and parents."""
    by_name = {r.name: r for r in plan.resources}
    policy_res: dict[int, PolicyResource] = {}
    for r in plan.resources:
        policy_res[id(r)] = PolicyResource(r.type, r.inputs, urn(plan.stack, r), r.name,
                                           _opts(plan.stack, r, by_name), None, None, [], {})
    named: dict[str, list[PolicyResource]] = {}
    for r in plan.resources:
        named.setdefault(r.name, []).append(policy_res[id(r)])
    for r in plan.resources:
        pr = policy_res[id(r)]
        pr.dependencies = [d for name in sorted(r.depends_on) for d in named.get(name, [])
                           if d is not pr]
        pr.property_dependencies = {
            prop: [d for name in sorted(names) for d in named.get(name, []) if d is not pr]
            for prop, names in r.property_deps.items()}
        if r.parent in by_name:
            pr.parent = policy_res[id(by_name[r.parent])]
    return list(policy_res.values())


def enforcement_of(rule: Rule, config: Mapping[str, Any] | None) -> EnforcementLevel:
    """The rule's enforcement after ``config`` (pack-config shape; key ``all`` applies to
    every rule)."""
    level: EnforcementLevel = rule.enforcement
    for key in ("all", rule.name):
        value = (config or {}).get(key)
        if isinstance(value, Mapping):
            value = value.get("enforcementLevel")
        if value is not None:
            try:
                level = EnforcementLevel(value)
            except ValueError:
                allowed = ", ".join(e.value for e in EnforcementLevel)
                raise ValueError(f"policy config {key!r}: enforcement level {value!r} is not "
                                 f"one of {allowed}") from None
    return level


def evaluate(plan: Plan, config: Mapping[str, Any] | None = None,
             rules: list[Rule] | None = None) -> list[Violation]:
    """Every violation of the pack (or ``rules``) on ``plan``; disabled rules are skipped."""
    unknown = sorted(set(config or {}) - {r.name for r in ALL} - {"all"})
    if unknown:
        raise ValueError(f"policy config names unknown rule(s) {', '.join(unknown)}; rule "
                         "names are listed in docs/policies.md")
    resources = stack_resources(plan)
    by_urn = {r.urn: r for r in resources}
    out: list[Violation] = []
    for rule in rules if rules is not None else ALL:
        level = enforcement_of(rule, config)
        if level == EnforcementLevel.DISABLED:
            continue
        policy = rule.policy()
        found: list[tuple[str, str, str]] = []
        if rule.is_stack:
            def report(msg: str, res_urn: str | None = None, found: list = found) -> None:
                res = by_urn.get(res_urn or "")
                found.append((res.resource_type if res else "", res.name if res else "", msg))
            policy.validate(StackValidationArgs(resources, {}), report)
        else:
            for res in resources:
                if res.resource_type not in rule.types:
                    continue
                args = ResourceValidationArgs(res.resource_type, res.props, res.urn, res.name,
                                              res.opts, None, {})

                def report(msg: str, _urn: str | None = None, res: PolicyResource = res,
                           found: list = found) -> None:
                    found.append((res.resource_type, res.name, msg))
                policy.validate(args, report)
        sev = rule.severity.value
        out += [Violation(rule.name, level.value, sev, t, n, m) for t, n, m in found]
    return out


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Read a ``--policy-pack-config`` JSON file (empty when no path)."""
    if not path:
        return {}
    try:
        config = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ValueError(f"policy config {path}: not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"policy config {path}: expected an object of rule name -> level")
    return config
