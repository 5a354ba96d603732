"""MongoDB into PostgreSQL (jsonb layout) through the session: copy, change stream, verify."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import Any

import pytest
from bson import Binary, Decimal128, ObjectId
from foreign_support import plan_for
from mongo_harness import mongo_db, mongo_server  # noqa: F401

from pgtide.core.foreign.session import ForeignSession
from pgtide.core.infra.errors import InputError


def _seed(server: Any, db: str) -> ObjectId:
    oid = ObjectId("65a1b2c3d4e5f60718293a4b")
    with server.client() as client:
        client[db]["orders"].insert_many([
            {"_id": oid, "customer": {"name": "Zoë", "tags": ["a", "b"]}, "total": Decimal128("12.50"),
             "at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC), "raw": Binary(b"\xff\xfe")},
            {"_id": 7, "customer": {"name": "int id"}, "lines": [{"sku": "x", "qty": 2}]},
            {"_id": "text-id", "nan": float("nan")},
        ])
        client[db]["we ird.coll'"].insert_one({"_id": 1, "v": "hostile name"})
    return oid


def test_copy_is_the_seed_layout(mongo_server: Any, mongo_db: str, target_cluster: Any, target_db: str) -> None:
    oid = _seed(mongo_server, mongo_db)
    session = ForeignSession(plan_for(mongo_server.url(mongo_db), target_cluster, target_db, layout="jsonb"))
    report = session.validate()
    assert report.ok, list(report.errors)
    session.init()
    rows = dict(target_cluster.execute("SELECT id, data FROM orders", dbname=target_db))
    assert rows[str(oid)] == {
        "_id": {"_type": "objectid", "value": str(oid)},
        "customer": {"name": "Zoë", "tags": ["a", "b"]}, "total": "12.50",
        "at": {"_type": "datetime", "value": "2024-05-01T12:00:00Z"},
        "raw": {"_type": "binary", "data": "//4="}}
    assert rows["7"]["lines"] == [{"sku": "x", "qty": 2}] and rows["text-id"]["nan"] == "NaN"
    assert target_cluster.execute('SELECT data->>\'v\' FROM "we ird.coll\'"', dbname=target_db) == [("hostile name",)]
    assert {r[0] for r in target_cluster.execute("SELECT _source_type FROM orders", dbname=target_db)} == {"mongodb"}
    assert session.verify().ok
    with pytest.raises(InputError, match="--layout jsonb"):
        plan_for(mongo_server.url(mongo_db), target_cluster, target_db, layout="typed")


def test_change_stream_under_a_writer(mongo_server: Any, mongo_db: str, target_cluster: Any,
                                      target_db: str) -> None:
    with mongo_server.client() as client:
        client[mongo_db]["events"].insert_many([{"_id": i, "n": i} for i in range(300)])
    session = ForeignSession(plan_for(mongo_server.url(mongo_db), target_cluster, target_db, layout="jsonb"))
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        rng = random.Random(7)
        with mongo_server.client() as client:
            coll = client[mongo_db]["events"]
            next_id = 1000
            while writing.is_set():
                op = rng.random()
                if op < 0.4:
                    coll.insert_one({"_id": next_id, "n": next_id})
                    next_id += 1
                elif op < 0.8:
                    coll.update_one({"_id": rng.randrange(300)}, {"$inc": {"n": 1}, "$set": {"touched": True}})
                else:
                    coll.delete_one({"_id": rng.randrange(300)})
                time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        session.init()
        stop = threading.Event()
        sync = threading.Thread(target=session.sync, kwargs={"stop": stop})
        sync.start()
        time.sleep(1.5)
    finally:
        writing.clear()
        thread.join()
    try:
        with mongo_server.client() as client:
            expected = {str(d["_id"]): d.get("n") for d in client[mongo_db]["events"].find()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = dict(target_cluster.execute("SELECT id, (data->>'n')::int FROM events", dbname=target_db))
            if got == expected:
                break
            time.sleep(0.3)
        assert got == expected
        assert session.verify().ok
        assert session.status().position is not None
    finally:
        stop.set()
        sync.join(timeout=30)
    assert not sync.is_alive()


def test_a_quiet_stream_keeps_its_position_moving(mongo_server: Any, mongo_db: str, target_cluster: Any,
                                                  target_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgtide.core.foreign import mongo

    monkeypatch.setattr(mongo, "CHECKPOINT_SECONDS", 0.5)
    with mongo_server.client() as client:
        client[mongo_db]["watched"].insert_one({"_id": 1})
        client[mongo_db]["busy"].insert_one({"_id": 1})
    session = ForeignSession(plan_for(mongo_server.url(mongo_db), target_cluster, target_db, layout="jsonb",
                                      exclude=("busy",)))
    session.init()
    stop = threading.Event()
    sync = threading.Thread(target=session.sync, kwargs={"stop": stop})
    sync.start()
    try:
        first = None
        deadline = time.monotonic() + 20
        with mongo_server.client() as client:
            while time.monotonic() < deadline:
                client[mongo_db]["busy"].insert_one({"n": time.time()})  # only the unwatched collection moves
                position = session.status().position
                if first is None and position is not None:
                    first = position
                elif first is not None and position != first:
                    break
                time.sleep(0.3)
        assert first is not None and position != first
        assert target_cluster.execute("SELECT count(*) FROM watched", dbname=target_db) == [(1,)]
    finally:
        stop.set()
        sync.join(timeout=30)
