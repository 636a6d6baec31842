"""Wires the components together. The only place that knows the order of the layers.

Data plane (issue 2): keys -> network -> storage -> audit; compute plane (issue 3):
cluster -> database, registry; then workload identity, which needs the cluster's OIDC
issuer and the data plane's buckets and keys.
"""

from __future__ import annotations

from typing import Any

from infra import config, tagging


def build() -> dict[str, Any]:
    """Declare every resource of the stack; return the stack outputs."""
    cfg = config.load()
    tagging.register(cfg)
    outputs: dict[str, Any] = {"profile": cfg.profile}
    return outputs
