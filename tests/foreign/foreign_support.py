"""Shared helpers of the foreign-source tests: a plan against the test target cluster."""

from __future__ import annotations

from typing import Any

from pgtide.core.foreign.endpoint import ForeignEndpoint
from pgtide.core.foreign.plan import ForeignPlan
from pgtide.core.infra.endpoint import Endpoint


def plan_for(source_url: str, target_cluster: Any, target_db: str, **settings: Any) -> ForeignPlan:
    return ForeignPlan(ForeignEndpoint.parse(source_url), Endpoint.parse(target_cluster.url(target_db)), **settings)
