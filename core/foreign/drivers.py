"""The adapter for a foreign endpoint (each driver imported only when its source is used)."""

from __future__ import annotations

from typing import cast

from .endpoint import ForeignEndpoint
from .source import SourceAdapter


def open_source(endpoint: ForeignEndpoint) -> SourceAdapter:
    """A connected adapter; EnvironmentProblem naming the extra when its driver is missing,
    ConnectError when the source cannot be reached."""
    if endpoint.kind == "sqlite":
        from .sqlite import open_sqlite

        return cast(SourceAdapter, open_sqlite(endpoint))
    if endpoint.kind == "mysql":
        from .mysql import open_mysql

        return cast(SourceAdapter, open_mysql(endpoint))
    from .mongo import open_mongo

    return cast(SourceAdapter, open_mongo(endpoint))
