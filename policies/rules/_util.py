"""Helpers the rule modules share: IAM document parsing, tags, CIDRs, stack joins."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyResource

from policies.model import StackView

WORLD = ("0.0.0.0/0", "::/0")
#: Profiles where data-protection settings (deletion protection, Multi-AZ...) are required.
STRICT_ENVIRONMENTS = ("prod", "staging")


def as_list(value: Any) -> list[Any]:
    """``None`` -> [], scalar or mapping -> [it], sequence -> list."""
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)  # lists, and the analyzer's list proxies
    return [value]


def document(value: Any) -> dict[str, Any]:
    """A policy document from a JSON string or dict (empty dict when absent or unparsable)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.strip():
        try:
            doc = json.loads(value)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}
    return {}


def statements(value: Any) -> list[dict[str, Any]]:
    """The statements of a policy document (JSON string or dict)."""
    return [s for s in as_list(document(value).get("Statement")) if isinstance(s, Mapping)]


def allows(stmt: Mapping[str, Any]) -> bool:
    """True for an ``Allow`` statement."""
    return str(stmt.get("Effect", "")).lower() == "allow"


def actions(stmt: Mapping[str, Any]) -> list[str]:
    """The statement's actions, as strings."""
    return [str(a) for a in as_list(stmt.get("Action"))]


def resources(stmt: Mapping[str, Any]) -> list[str]:
    """The statement's resources, as strings."""
    return [str(r) for r in as_list(stmt.get("Resource"))]


def principals(stmt: Mapping[str, Any]) -> list[str]:
    """Every principal value of the statement (``"*"`` for a bare wildcard)."""
    p = stmt.get("Principal")
    if p is None:
        return []
    if isinstance(p, str):
        return [p]
    out: list[str] = []
    if isinstance(p, Mapping):
        for v in p.values():
            out += [str(x) for x in as_list(v)]
    return out


def open_to_anyone(stmt: Mapping[str, Any]) -> bool:
    """An Allow statement for Principal ``*`` with no condition to narrow it."""
    return allows(stmt) and "*" in principals(stmt) and not stmt.get("Condition")


def label(stmt: Mapping[str, Any]) -> str:
    """How a message names a statement: its Sid, or its position."""
    return f"statement {stmt.get('Sid')!r}" if stmt.get("Sid") else "a statement"


def environment(props: Mapping[str, Any]) -> str:
    """The ``Environment`` tag the stack transformation sets (the stack's profile)."""
    tags = props.get("tags") or {}
    return str(tags.get("Environment", "")) if isinstance(tags, Mapping) else ""


def strict(props: Mapping[str, Any]) -> bool:
    """True for resources of a prod or staging stack."""
    return environment(props) in STRICT_ENVIRONMENTS


def get(props: Mapping[str, Any], *path: str) -> Any:
    """Nested lookup that tolerates missing levels and single-element lists."""
    cur: Any = props
    for key in path:
        if isinstance(cur, Sequence) and not isinstance(cur, str):
            cur = cur[0] if len(cur) else None
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def world(cidrs: Iterable[Any]) -> list[str]:
    """The internet-wide CIDRs among ``cidrs``."""
    return [str(c) for c in cidrs if str(c) in WORLD]


def related(view: StackView, target: PolicyResource, types: tuple[str, ...],
            prop: str) -> list[PolicyResource]:
    """Resources of ``types`` whose ``prop`` refers to ``target``.

    The analyzer's ``property_dependencies`` decide when present (they hold during preview,
    when names are still unknown); otherwise ``prop`` must equal the target's name or id;
    with neither, any dependency on ``target`` counts.
    """
    keys = {str(v) for v in (target.props.get("bucket"), target.props.get("id"),
                             target.props.get("name")) if v}
    out = []
    for res in view.of_type(*types):
        pdeps = res.property_dependencies or {}
        if prop in pdeps:
            hit = any(d.urn == target.urn for d in pdeps[prop])
        elif res.props.get(prop) is not None and keys:
            hit = str(res.props.get(prop)) in keys
        else:
            hit = not pdeps and any(d.urn == target.urn for d in res.dependencies)
        if hit:
            out.append(res)
    return out
