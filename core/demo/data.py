"""The sample database of ``pgtide demo``, and a light write load to keep it alive.

The schema is small but has every shape a real migration meets:

- ``page_views``: the large table (a few hundred thousand rows), copied in key ranges;
- ``metrics``: a time series keyed by (device, time), the natural home of a time filter
  (its time column is part of the key, so the filter is publication-safe);
- ``customers`` and ``orders``: a foreign key, where row filters must keep both sides whole;
- ``audit_log``: no primary key (UPDATE/DELETE cannot replicate without a replica identity);
- ``invoice_number_seq``: a sequence (not replicated; copied at init and cutover);
- ``documents``: large objects (copied once, not replicated);
- ``billing.invoices``: a table in a schema other than public.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import psycopg
from psycopg import sql

from ..infra.db import connect
from ..infra.endpoint import Endpoint
from ..infra.errors import PgtideError

log = logging.getLogger("pgtide.demo")

DEMO_DATABASE = "shop"

_SCHEMA = """
CREATE SCHEMA billing;
CREATE SEQUENCE invoice_number_seq START 1000;
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text,
    region text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers(id),
    status text NOT NULL DEFAULT 'new',
    amount numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE TABLE page_views (
    id bigserial PRIMARY KEY,
    path text NOT NULL,
    referrer text,
    user_agent text,
    viewed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE metrics (
    device_id int NOT NULL,
    recorded_at timestamptz NOT NULL,
    temperature real,
    humidity real,
    PRIMARY KEY (device_id, recorded_at)
);
CREATE TABLE audit_log (
    at timestamptz NOT NULL DEFAULT now(),
    actor text,
    action text,
    detail jsonb
);
CREATE TABLE documents (
    id serial PRIMARY KEY,
    title text NOT NULL,
    content oid
);
CREATE TABLE billing.invoices (
    id serial PRIMARY KEY,
    number bigint NOT NULL DEFAULT nextval('invoice_number_seq'),
    customer_id int NOT NULL REFERENCES customers(id),
    total numeric(12,2) NOT NULL,
    issued_on date NOT NULL
);
"""

_DATA = """
INSERT INTO customers (name, email, region, created_at)
SELECT 'Customer ' || g, 'c' || g || '@example.com', (ARRAY['eu','us','ap'])[1 + g % 3],
       now() - (g % 700) * interval '1 day'
FROM generate_series(1, {customers}) g;

INSERT INTO orders (customer_id, status, amount, created_at)
SELECT 1 + (g * 7919) % {customers}, (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],
       round((10 + (g * 37) % 490)::numeric, 2), now() - (g % 400) * interval '1 day'
FROM generate_series(1, {orders}) g;

INSERT INTO page_views (path, referrer, user_agent, viewed_at)
SELECT '/product/' || (g % 5000), CASE WHEN g % 3 = 0 THEN 'https://search.example/?q=' || (g % 977) END,
       'Mozilla/5.0 (demo; build ' || (g % 97) || ')', now() - (g % 90000) * interval '1 minute'
FROM generate_series(1, {page_views}) g;

INSERT INTO metrics (device_id, recorded_at, temperature, humidity)
SELECT d, date_trunc('hour', now()) - h * interval '1 hour', 18 + (h % 24) / 3.0 + d, 40 + (h % 50)
FROM generate_series(1, {devices}) d, generate_series(1, 24 * 365) h;

INSERT INTO audit_log (at, actor, action, detail)
SELECT now() - g * interval '5 minutes', 'user' || (g % 40), (ARRAY['login','export','update'])[1 + g % 3],
       jsonb_build_object('n', g)
FROM generate_series(1, 2000) g;

INSERT INTO documents (title, content)
SELECT 'Contract ' || g, lo_from_bytea(0, convert_to(repeat('pgtide demo contract ' || g || E'\\n', 400), 'UTF8'))
FROM generate_series(1, 5) g;

INSERT INTO billing.invoices (customer_id, total, issued_on)
SELECT 1 + (g * 31) % {customers}, round((20 + g % 300)::numeric, 2), current_date - (g % 365)
FROM generate_series(1, 3000) g;
"""


def load_sample(server: Endpoint, *, database: str = DEMO_DATABASE, scale: float = 1.0) -> None:
    """Create ``database`` on ``server`` and fill it with the sample schema and data, then ANALYZE."""
    with connect(server.with_dbname("postgres")) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    sizes = {
        "customers": max(50, int(2_000 * scale)),
        "orders": max(100, int(20_000 * scale)),
        "page_views": max(1_000, int(250_000 * scale)),
        "devices": max(1, int(8 * scale)),
    }
    with connect(server.with_dbname(database)) as conn:
        with conn.transaction():
            conn.execute(_SCHEMA)
            # Only integers we computed are formatted in: no user input reaches this SQL.
            conn.execute(_DATA.format(**sizes))
        # Row estimates and sizes in the picker come from the statistics.
        conn.execute("ANALYZE")


class WriteLoad:
    """A few writes a second on the demo database, so replication has something to carry.

    Inserts orders, metrics and page views, updates customers; never touches ``audit_log``
    with UPDATE/DELETE (it has no replica identity). Stops quietly when the server goes away.
    """

    def __init__(self, server: Endpoint, *, database: str = DEMO_DATABASE, interval: float = 0.2) -> None:
        self.endpoint = server.with_dbname(database)
        self.interval = interval
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgtide-demo-writes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        rng = random.Random(7)
        try:
            # Named as the application it plays: pgtide's own sessions (application name pgtide*)
            # are the ones a cutover's fence leaves alone.
            with connect(self.endpoint.with_params(application_name="shop-demo-app"), pooled=False) as conn:
                customers = int(conn.execute("SELECT max(id) FROM customers").fetchone()[0] or 1)  # type: ignore[index]
                while not self._stop.wait(self.interval):
                    self._write(conn, rng, customers)
                    self.writes += 1
        except (PgtideError, psycopg.Error) as exc:
            # The demo is ending (servers stopping) or the user broke the schema on purpose.
            log.info("demo write load stopped: %s", type(exc).__name__)

    @staticmethod
    def _write(conn: psycopg.Connection[Any], rng: random.Random, customers: int) -> None:
        customer = rng.randint(1, customers)
        conn.execute("INSERT INTO orders (customer_id, amount) VALUES (%s, %s)", [customer, rng.randint(5, 500)])
        conn.execute(
            "INSERT INTO metrics (device_id, recorded_at, temperature, humidity) "
            "VALUES (%s, clock_timestamp(), %s, %s) ON CONFLICT DO NOTHING",
            [rng.randint(1, 8), 18 + rng.random() * 8, 40 + rng.random() * 20],
        )
        conn.execute("INSERT INTO page_views (path) VALUES (%s)", [f"/product/{rng.randint(1, 5000)}"])
        if rng.random() < 0.3:
            conn.execute("UPDATE customers SET email = %s WHERE id = %s", [f"new{rng.randint(1, 999)}@example.com",
                                                                          customer])
        if rng.random() < 0.1:
            conn.execute("INSERT INTO audit_log (actor, action, detail) VALUES ('demo', 'write', '{}')")
