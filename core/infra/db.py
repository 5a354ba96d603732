"""Opening connections, and turning libpq's failures into errors a user can act on."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from .endpoint import Endpoint
from .errors import ConnectError, InputError

# (pattern in libpq's message, one-line cause, remedy). First match wins.
_CONNECT_FAILURES: list[tuple[str, str, str]] = [
    (
        r"password authentication failed|authentication failed for user",
        "the server rejected the password for user {user}",
        "Check the password; pgtide also reads it from ~/.pgpass, PGPASSWORD or the OS keyring.",
    ),
    (
        r"no password supplied|fe_sendauth",
        "the server asks for a password and none was given for user {user}",
        "Put the password in the URL, in ~/.pgpass (host:port:db:user:password, mode 0600), "
        "in PGPASSWORD, or save it in the keyring with a profile.",
    ),
    (
        r"no pg_hba\.conf entry",
        "the server's pg_hba.conf does not allow user {user} from this machine",
        "Ask the server's administrator to add a pg_hba.conf entry for this client, or try sslmode=require.",
    ),
    (
        r"database \".*\" does not exist",
        "database {dbname} does not exist on {host}:{port}",
        "Check the database name, or create it first.",
    ),
    (
        r"role \".*\" does not exist",
        "role {user} does not exist on {host}:{port}",
        "Check the user name in the connection string.",
    ),
    (
        r"could not translate host name|Name or service not known|nodename nor servname",
        "host name {host} cannot be resolved",
        "Check the host name for typos and that this machine's DNS can resolve it.",
    ),
    (
        r"Connection refused",
        "nothing accepts connections at {host}:{port}",
        "Check that the server is running and listening on that address and port (listen_addresses, firewall).",
    ),
    (
        r"timeout expired|timed out",
        "no answer from {host}:{port} within the connect timeout",
        "Check the network path and firewall to the server, or raise connect_timeout in the connection string.",
    ),
    (
        r"SSL|certificate",
        "the TLS handshake with {host}:{port} failed",
        "Check sslmode and the certificates (sslrootcert, sslcert, sslkey) in the connection string.",
    ),
    (
        r"too many connections|remaining connection slots",
        "the server at {host}:{port} has no free connection slots",
        "Close idle connections or raise max_connections on the server, then retry.",
    ),
    (
        r"the database system is (starting up|shutting down|in recovery mode)",
        "the server at {host}:{port} is not accepting connections right now",
        "Wait until it has finished starting or recovering, then retry.",
    ),
]


def describe_connect_failure(endpoint: Endpoint, exc: BaseException) -> ConnectError:
    """A ConnectError with a specific cause and remedy, and nothing secret in it."""
    message = endpoint.redact(str(exc))
    facts = {"user": repr(endpoint.user), "dbname": repr(endpoint.dbname), "host": endpoint.host, "port": endpoint.port}
    for pattern, cause, remedy in _CONNECT_FAILURES:
        if re.search(pattern, message, re.IGNORECASE):
            return ConnectError(f"{endpoint.redacted()}: {cause.format(**facts)}", remedy)
    first_line = next((line.strip() for line in message.splitlines() if line.strip()), "unknown error")
    return ConnectError(
        f"{endpoint.redacted()}: {first_line}",
        "Check the connection string and that the server is reachable (try psql with the same settings).",
    )


def connect(endpoint: Endpoint, *, autocommit: bool = True, **extra: Any) -> psycopg.Connection[Any]:
    """Open a connection, with keepalives and a connect timeout, or raise a ConnectError."""
    try:
        # UTF8 whatever the database's encoding: pgtide's own text (names, filters) is
        # Unicode, and JSON results (EXPLAIN) are decoded as UTF-8; the server converts.
        return psycopg.connect(**endpoint.connect_kwargs(**{"client_encoding": "utf8", **extra}),
                               autocommit=autocommit)
    except psycopg.ProgrammingError as exc:
        raise InputError(
            f"{endpoint.redacted()}: {endpoint.redact(str(exc)).splitlines()[0]}",
            "Check the connection parameters.",
            title="Bad connection string",
        ) from None
    except psycopg.OperationalError as exc:
        raise describe_connect_failure(endpoint, exc) from None
