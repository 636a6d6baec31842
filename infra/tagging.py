"""One tagging mechanism: a stack transformation that merges the standard tags into every
resource whose type takes ``tags``. Resource-specific tags (``DataClassification: phi`` on
data buckets) win over the defaults.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pulumi

from infra.config import StackConfig


@functools.cache
def _takes_tags(cls: type) -> bool:
    init = getattr(cls, "_internal_init", None)
    return init is not None and "tags" in inspect.signature(init).parameters


def standard_tags(cfg: StackConfig) -> dict[str, str]:
    """Tags every taggable resource carries."""
    return {
        "Project": "labelstack",
        "Environment": cfg.profile,
        "Stack": pulumi.get_stack(),
        "Owner": cfg.owner,
        "CostCenter": cfg.cost_center,
        "DataClassification": "internal",
        "ManagedBy": "pulumi",
    }


def register(cfg: StackConfig) -> None:
    """Install the transformation for every resource declared after this call."""
    base = standard_tags(cfg)

    def add_tags(
        args: pulumi.ResourceTransformationArgs,
    ) -> pulumi.ResourceTransformationResult | None:
        res = args.resource
        if not isinstance(res, pulumi.CustomResource) or not _takes_tags(type(res)):
            return None
        own: Any = args.props.get("tags")
        merged = (pulumi.Output.from_input(own).apply(lambda t: {**base, **(t or {})})
                  if isinstance(own, pulumi.Output) else {**base, **(own or {})})
        return pulumi.ResourceTransformationResult(props={**args.props, "tags": merged},
                                                   opts=args.opts)

    pulumi.runtime.register_stack_transformation(add_tags)
