"""What is on a source server, read in a handful of catalog queries (never one per table).

A database with 10,000 tables is described by seven queries whatever its size; the
benchmark in tests/benchmarks/catalog_bench.py keeps that honest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..infra.db import connect
from ..infra.endpoint import Endpoint

SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'"
)

TIME_TYPES = frozenset({"timestamp with time zone", "timestamp without time zone", "date"})


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    size_bytes: int
    owner: str
    encoding: str


@dataclass(frozen=True)
class SkippedDatabase:
    name: str
    reason: str


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    #: As format_type() prints it, precision included: "timestamp(6) without time zone".
    type: str
    not_null: bool
    generated: bool

    @property
    def base_type(self) -> str:
        """The type without its precision: "timestamp without time zone"."""
        return base_type(self.type)


def base_type(type_name: str) -> str:
    return re.sub(r"\(\d+\)", "", type_name)


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    oid: int
    #: 'r' ordinary table, 'p' partitioned parent
    kind: str
    total_bytes: int
    #: None when the table was never analyzed (PostgreSQL does not know yet)
    row_estimate: int | None
    primary_key: tuple[str, ...]
    #: 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    replica_identity: str
    #: The columns UPDATE/DELETE identify rows by; empty when there are none.
    identity_columns: tuple[str, ...]
    partition_parent: tuple[str, str] | None
    unlogged: bool
    extension_member: bool
    columns: tuple[ColumnInfo, ...]
    #: Row-level security policies would filter what this role reads (unless it bypasses RLS).
    row_security: bool = False

    @property
    def qualified(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def is_partitioned(self) -> bool:
        return self.kind == "p"

    @property
    def has_usable_identity(self) -> bool:
        """Can logical replication apply UPDATE and DELETE for this table?"""
        if self.replica_identity == "f":
            return True
        return bool(self.identity_columns)

    @property
    def time_columns(self) -> tuple[ColumnInfo, ...]:
        return tuple(column for column in self.columns if column.base_type in TIME_TYPES)

    def column(self, name: str) -> ColumnInfo | None:
        return next((column for column in self.columns if column.name == name), None)


@dataclass(frozen=True)
class UnpublishableObject:
    """Relations logical replication cannot carry: their content must come another way."""

    schema: str
    name: str
    kind: str  # 'view', 'materialized view', 'foreign table'


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: tuple[str, str]
    columns: tuple[str, ...]
    referenced_table: tuple[str, str]
    referenced_columns: tuple[str, ...]


@dataclass(frozen=True)
class SequenceInfo:
    schema: str
    name: str
    owned_by: tuple[str, str, str] | None  # (schema, table, column)


@dataclass(frozen=True)
class DatabaseCatalog:
    database: str
    server_version_num: int
    schemas: tuple[str, ...]
    tables: tuple[TableInfo, ...]
    unpublishable: tuple[UnpublishableObject, ...]
    foreign_keys: tuple[ForeignKey, ...]
    sequences: tuple[SequenceInfo, ...]
    large_objects: int
    extensions: tuple[tuple[str, str], ...]  # (name, version)
    _by_name: dict[tuple[str, str], TableInfo] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({table.qualified: table for table in self.tables})

    def table(self, schema: str, name: str) -> TableInfo | None:
        return self._by_name.get((schema, name))

    def fk_neighbours(self, schema: str, name: str) -> set[tuple[str, str]]:
        """Tables linked to this one by a foreign key, in either direction."""
        key = (schema, name)
        linked: set[tuple[str, str]] = set()
        for fk in self.foreign_keys:
            if fk.table == key:
                linked.add(fk.referenced_table)
            if fk.referenced_table == key:
                linked.add(fk.table)
        linked.discard(key)
        return linked

    @property
    def total_bytes(self) -> int:
        # Partitioned parents report the sum of their children; count the leaves only once.
        return sum(table.total_bytes for table in self.tables if not table.is_partitioned)


@dataclass(frozen=True)
class ServerCatalog:
    server_version_num: int
    databases: tuple[DatabaseInfo, ...]
    skipped: tuple[SkippedDatabase, ...]

    def database(self, name: str) -> DatabaseInfo | None:
        return next((db for db in self.databases if db.name == name), None)


def list_databases(endpoint: Endpoint) -> ServerCatalog:
    """The databases pgtide can migrate, and the ones it skips with the reason."""
    with connect(endpoint) as conn:
        version = int(conn.execute("SELECT current_setting('server_version_num')").fetchone()[0])  # type: ignore[index]
        rows = conn.execute(
            """
            SELECT d.datname, d.datistemplate, d.datallowconn,
                   CASE WHEN d.datallowconn AND has_database_privilege(d.oid, 'CONNECT')
                        THEN pg_database_size(d.oid) ELSE 0 END,
                   pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),
                   has_database_privilege(d.oid, 'CONNECT')
            FROM pg_database d ORDER BY d.datname
            """
        ).fetchall()
    databases: list[DatabaseInfo] = []
    skipped: list[SkippedDatabase] = []
    for name, is_template, allow_conn, size, owner, encoding, can_connect in rows:
        if is_template:
            skipped.append(SkippedDatabase(name, "template database (recreated by the target server itself)"))
        elif not allow_conn:
            skipped.append(SkippedDatabase(name, "does not allow connections (datallowconn = false)"))
        elif not can_connect:
            skipped.append(SkippedDatabase(name, "this role lacks CONNECT privilege on it"))
        elif name in ("rdsadmin", "azure_maintenance", "azure_sys", "cloudsqladmin"):
            skipped.append(SkippedDatabase(name, "reserved by the cloud provider"))
        else:
            databases.append(DatabaseInfo(name, int(size), owner, encoding))
    return ServerCatalog(version, tuple(databases), tuple(skipped))


_TABLES_SQL = f"""
WITH index_columns AS (
    -- Primary keys and replica identity indexes of every table at once, not a lookup per table.
    SELECT i.indrelid, i.indisprimary, i.indisreplident, array_agg(a.attname ORDER BY k.ord) AS cols
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indisprimary OR i.indisreplident
    GROUP BY i.indrelid, i.indisprimary, i.indisreplident
), extension_members AS (
    SELECT objid FROM pg_depend WHERE classid = 'pg_class'::regclass AND deptype = 'e'
)
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence = 'u',
       c.reltuples::float8,
       c.relreplident,
       pk.cols,
       ri.cols,
       parent_n.nspname, parent.relname,
       em.objid IS NOT NULL,
       c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'MEMBER'))
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN index_columns pk ON pk.indrelid = c.oid AND pk.indisprimary
LEFT JOIN index_columns ri ON ri.indrelid = c.oid AND ri.indisreplident
LEFT JOIN (SELECT DISTINCT objid FROM extension_members) em ON em.objid = c.oid
LEFT JOIN pg_inherits inh ON inh.inhrelid = c.oid AND c.relispartition
LEFT JOIN pg_class parent ON parent.oid = inh.inhparent
LEFT JOIN pg_namespace parent_n ON parent_n.oid = parent.relnamespace
WHERE c.relkind IN ('r', 'p') AND {SYSTEM_SCHEMA_FILTER}
ORDER BY n.nspname, c.relname
"""

# Sizes open every table, toast table and index (cold, ~70 µs a table): the slowest part by
# far, so they are read on a second connection while the first reads everything else.
_SIZES_SQL = f"""
SELECT c.oid, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {SYSTEM_SCHEMA_FILTER} AND mod(c.oid::int8, %(parts)s) = %(part)s
"""
SIZE_CONNECTIONS = 2

_COLUMNS_SQL = f"""
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attgenerated <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') AND {SYSTEM_SCHEMA_FILTER}
ORDER BY a.attrelid, a.attnum
"""

_UNPUBLISHABLE_SQL = f"""
SELECT n.nspname, c.relname,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'foreign table' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm', 'f') AND {SYSTEM_SCHEMA_FILTER}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""

_FOREIGN_KEYS_SQL = f"""
SELECT con.conname, n.nspname, c.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND {SYSTEM_SCHEMA_FILTER}
ORDER BY 2, 3, 1
"""

_SEQUENCES_SQL = f"""
SELECT n.nspname, s.relname, tn.nspname, t.relname, a.attname
FROM pg_class s
JOIN pg_namespace n ON n.oid = s.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE s.relkind = 'S' AND {SYSTEM_SCHEMA_FILTER}
ORDER BY 1, 2
"""

_SUMMARY_SQL = f"""
SELECT current_setting('server_version_num')::int,
       (SELECT count(*) FROM pg_largeobject_metadata),
       ARRAY(SELECT n.nspname FROM pg_namespace n WHERE {SYSTEM_SCHEMA_FILTER} ORDER BY 1),
       ARRAY(SELECT ARRAY[extname, extversion] FROM pg_extension ORDER BY 1)
"""


def _columns_by_table(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[ColumnInfo]]:
    grouped: dict[int, list[ColumnInfo]] = {}
    for relid, name, type_name, not_null, generated in rows:
        grouped.setdefault(relid, []).append(ColumnInfo(name, type_name, bool(not_null), bool(generated)))
    return grouped


def _read_sizes(endpoint: Endpoint, part: int) -> dict[int, int]:
    with connect(endpoint) as conn:
        rows = conn.execute(_SIZES_SQL, {"parts": SIZE_CONNECTIONS, "part": part})
        return {int(oid): int(size or 0) for oid, size in rows}


def discover_database(endpoint: Endpoint) -> DatabaseCatalog:
    """Describe the database ``endpoint`` points at, in one repeatable-read snapshot.

    Sizes come from a second connection in parallel; they are estimates either way.
    """
    with ThreadPoolExecutor(max_workers=SIZE_CONNECTIONS, thread_name_prefix="pgtide-sizes") as pool:
        futures = [pool.submit(_read_sizes, endpoint, part) for part in range(SIZE_CONNECTIONS)]
        return _discover_structure(endpoint, futures)


def _discover_structure(endpoint: Endpoint, size_futures: list[Future[dict[int, int]]]) -> DatabaseCatalog:
    with connect(endpoint, autocommit=False) as conn:
        # One snapshot for all queries, so tables, columns and keys agree with each other.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        version, large_objects, schemas, extensions = conn.execute(_SUMMARY_SQL).fetchone()  # type: ignore[misc]
        columns = _columns_by_table(conn.execute(_COLUMNS_SQL))
        table_rows = conn.execute(_TABLES_SQL).fetchall()
        unpublishable = tuple(UnpublishableObject(*row) for row in conn.execute(_UNPUBLISHABLE_SQL))
        foreign_keys = tuple(
            ForeignKey(name, (schema, table), tuple(cols), (ref_schema, ref_table), tuple(ref_cols))
            for name, schema, table, cols, ref_schema, ref_table, ref_cols in conn.execute(_FOREIGN_KEYS_SQL)
        )
        sequences = tuple(
            SequenceInfo(schema, name, (t_schema, t_name, column) if column else None)
            for schema, name, t_schema, t_name, column in conn.execute(_SEQUENCES_SQL)
        )
        conn.rollback()
    sizes: dict[int, int] = {}
    for future in size_futures:
        sizes.update(future.result())
    tables = tuple(_tables(table_rows, columns, sizes))
    return DatabaseCatalog(
        database=endpoint.dbname,
        server_version_num=int(version),
        schemas=tuple(schemas),
        tables=tables,
        unpublishable=unpublishable,
        foreign_keys=foreign_keys,
        sequences=sequences,
        large_objects=int(large_objects),
        extensions=tuple((name, ext_version) for name, ext_version in extensions),
    )


def _partitioned_sizes(rows: list[tuple[Any, ...]], sizes: dict[int, int]) -> dict[int, int]:
    """A partitioned table's size is the sum of its leaves, at any depth."""
    oid_by_name = {(row[1], row[2]): int(row[0]) for row in rows}
    children: dict[int, list[int]] = {}
    for row in rows:
        if row[9] is not None:
            parent = oid_by_name.get((row[9], row[10]))
            if parent is not None:
                children.setdefault(parent, []).append(int(row[0]))

    def total(oid: int) -> int:
        return sizes.get(oid, 0) + sum(total(child) for child in children.get(oid, ()))

    return {int(row[0]): total(int(row[0])) for row in rows if row[3] == "p"}


def _tables(
    rows: list[tuple[Any, ...]], columns: dict[int, list[ColumnInfo]], sizes: dict[int, int]
) -> Iterator[TableInfo]:
    sizes = {**sizes, **_partitioned_sizes(rows, sizes)}
    for (oid, schema, name, kind, unlogged, reltuples, replident, pk, ri_cols,
         parent_schema, parent_name, extension_member, row_security) in rows:
        size = sizes.get(int(oid), 0)
        primary_key = tuple(pk or ())
        if replident == "d":
            identity = primary_key
        elif replident == "i":
            identity = tuple(ri_cols or ())
        elif replident == "f":
            identity = tuple(column.name for column in columns.get(oid, ()))
        else:
            identity = ()
        yield TableInfo(
            schema=schema,
            name=name,
            oid=int(oid),
            kind=kind,
            total_bytes=int(size or 0),
            row_estimate=None if reltuples is None or reltuples < 0 else int(reltuples),
            primary_key=primary_key,
            replica_identity=replident,
            identity_columns=identity,
            partition_parent=(parent_schema, parent_name) if parent_name else None,
            unlogged=bool(unlogged),
            extension_member=bool(extension_member),
            columns=tuple(columns.get(oid, ())),
            row_security=bool(row_security),
        )
