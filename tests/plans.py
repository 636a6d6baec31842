"""Fixtures that run the Pulumi program under mocks (see :mod:`infra.offline`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from infra import offline

STACKS = ("dev", "staging", "prod", "ephemeral")


@pytest.fixture(scope="session")
def stack_plan() -> Callable[[str], offline.Plan]:
    """``stack_plan("prod")``: the plan of a shipped stack file, computed once per session."""
    cache: dict[str, offline.Plan] = {}

    def get(stack: str) -> offline.Plan:
        if stack not in cache:
            cache[stack] = offline.run(stack)
        return cache[stack]

    return get


@pytest.fixture
def plan_with() -> Callable[..., offline.Plan]:
    """``plan_with("dev", egressMode="nat")``: a fresh plan with config overrides."""

    def run(stack: str, **overrides: Any) -> offline.Plan:
        return offline.run(stack, overrides)

    return run


@pytest.fixture(params=STACKS)
def each_stack(request: pytest.FixtureRequest, stack_plan: Callable[[str], offline.Plan]
               ) -> offline.Plan:
    """Parametrized over every shipped stack file."""
    return stack_plan(request.param)
