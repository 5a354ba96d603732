"""``pgtide migrations``: every migration recorded on this machine, by the CLI or the app."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..core.jobs.overview import describe
from .render import print_json, table

HEADERS = ("ID", "SOURCE -> TARGET", "DATABASES", "STATE", "WORKER", "LAST VERIFY", "AGE")


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 7200:
        return f"{int(seconds // 60)} min"
    if seconds < 172800:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def _cmd_migrations(args: argparse.Namespace) -> int:
    from ..core.jobs.store import all_records

    now = time.time()
    found = [describe(store, now) for store in all_records()]
    if args.json:
        for entry in found:
            print_json({"event": "migration", **entry})
        return 0
    if not found:
        print("no migration recorded on this machine (pgtide init or the app records one)")
        return 0
    rows = []
    for entry in found:
        states = sorted(set(filter(None, entry["databases"].values()))) or ["-"]
        verify = entry["last_verify"]
        verified = "-" if not verify else (
            ("ok" if verify.get("ok") else
             f"{sum(int(verify.get(k, 0)) for k in ('missing', 'extra', 'different'))} differences")
            + f", {_age(now - verify['at'])} ago")
        pair = (f"{entry['source']} -> {entry['target']}" if entry["source"] else entry["recorded_by"])
        worker = entry["worker"]
        shown = {"none": "-", "alive": f"alive (pid {worker['pid']}, {worker['command']})"}.get(
            worker["state"], worker["state"])
        rows.append([entry["id"], pair, ", ".join(entry["databases"]) or "-", "/".join(states), shown, verified,
                     _age(entry["age_seconds"])])
    print(table(rows, HEADERS))
    return 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "migrations", help="list the migrations recorded on this machine",
        description="List every migration recorded on this machine (started by the CLI or the app): id, "
                    "source -> target, databases, state, last verify, age. Use the id with --migration.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per migration")
    parser.set_defaults(handler=_cmd_migrations)
