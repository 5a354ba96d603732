"""Every recorded migration as plain data: what `pgtide migrations` prints and the app lists."""

from __future__ import annotations

from typing import Any

from .worker import worker_info


def describe(store: Any, now: float) -> dict[str, Any]:
    """One migration as plain data (what --json prints)."""
    meta = store.meta()
    databases = store.databases()
    legacy = meta.get("format") is None
    created = meta.get("created_at") or min((d.get("updated_at", now) for d in databases.values()), default=now)
    verify = meta.get("last_verify")
    worker = worker_info(store.migration_id)
    return {
        "id": store.migration_id,
        "source": meta.get("source", {}).get("display"),
        "target": meta.get("target", {}).get("display"),
        "databases": {name: entry.get("status") for name, entry in sorted(databases.items())},
        "last_verify": verify,
        "created_at": created,
        "age_seconds": max(0.0, now - created),
        "recorded_by": "pgtide 0.1 (no plan recorded)" if legacy else "pgtide",
        "kind": "foreign" if meta.get("format") == "foreign-1" else "postgresql",
        "worker": {"state": worker.state, "pid": worker.pid, "command": worker.command},
    }
