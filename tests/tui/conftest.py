"""Fixtures for the app's tests: the demo's sample database on the source cluster."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from pgharness import PgCluster

_names = itertools.count(1)


@pytest.fixture
def shop_db(source_cluster: PgCluster, target_cluster: PgCluster) -> Iterator[str]:
    """The demo's sample database (small) on the source; it and its copy on the target are dropped afterwards."""
    from pgtide.core.demo.data import load_sample
    from pgtide.core.infra.endpoint import Endpoint

    name = f"shop_{os.getpid()}_{next(_names)}"
    load_sample(Endpoint.parse(source_cluster.url()), database=name, scale=0.02)
    yield name
    target_cluster.clean_replication()
    source_cluster.clean_replication()
    target_cluster.drop_database(name)
    source_cluster.drop_database(name)
