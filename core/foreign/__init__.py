"""Sources that are not PostgreSQL: SQLite, MySQL/MariaDB and MongoDB, into PostgreSQL.

A foreign source is one more kind of recorded migration. What differs from a PostgreSQL
source is confined here: the endpoint (endpoint.py), what a source is made of and how it is
read (source.py: the adapters sqlite.py, mysql.py, mongo.py implement it), how values land
on the target in either layout (encode.py for ``jsonb``, typed.py for ``typed``), the copy
(load.py), keeping the target in sync (apply.py, refresh.py) and verify (verify.py). The
session (session.py) gives the commands the same verbs a PostgreSQL migration has.
"""
