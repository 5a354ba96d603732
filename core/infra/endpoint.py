"""Where a server is and how to reach it, built from anything a PostgreSQL user already has.

An :class:`Endpoint` accepts a ``postgresql://`` URL, a keyword DSN, a ``service=`` name or
nothing at all (PG* environment variables), and keeps the parameters exactly as libpq parsed
them. Connecting always goes through libpq with those parameters, so libpq keeps applying its
own rules (service files, PG* variables, .pgpass) exactly as ``psql`` would.

The redacted URL is the only form of an endpoint that is ever shown, logged or put into an
error: ``repr()`` and ``str()`` return it too, so an endpoint that ends up in a log line or
an f-string cannot leak a password.
"""

from __future__ import annotations

import configparser
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import InputError

#: libpq parameters whose values are secrets: never displayed, logged or written to a profile.
SECRET_KEYS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)

# Set as real libpq parameters (not socket options of our own) so a dead peer is noticed by
# every connection, including the walsender-facing replication connection that holds a
# snapshot for the whole copy, and so a black-holed host fails in seconds, not minutes.
CONNECTION_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "connect_timeout": "10",
        "keepalives": "1",
        "keepalives_idle": "30",
        "keepalives_interval": "10",
        "keepalives_count": "3",
        "application_name": "pgtide",
    }
)

# Shown in the redacted URL only when they differ from what libpq would do anyway.
_HIDDEN_IN_DISPLAY = frozenset({"host", "hostaddr", "port", "user", "dbname", "service", "passfile"}) | set(
    CONNECTION_DEFAULTS
)

URL_REMEDY = (
    "Use postgresql://USER:PASSWORD@HOST:PORT/DBNAME or a keyword string such as "
    "'host=HOST port=5432 dbname=DB user=USER'; percent-encode special characters in the "
    "password (@ as %40, : as %3A, / as %2F, # as %23, % as %25)."
)


def _libpq_env_vars() -> dict[str, str]:
    """Map libpq keywords to their environment variables, as this libpq knows them."""
    names: dict[str, str] = {}
    for option in pq.Conninfo.get_defaults():
        if option.envvar:
            names[option.keyword.decode()] = option.envvar.decode()
    return names


def _sanitize_libpq_message(message: str, secrets: list[str]) -> str:
    """libpq quotes the offending fragment of a bad string, which may be part of a password."""
    pieces = message.strip().split('"')
    # Odd pieces are the quoted fragments; keep one-character ones such as "=" for meaning.
    cleaned = '"'.join("…" if index % 2 and len(piece) > 1 else piece for index, piece in enumerate(pieces))
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(secret, "***")
    return cleaned.splitlines()[0] if cleaned else "unparseable connection string"


def _secret_candidates(text: str) -> list[str]:
    """Best-effort extraction of password text from a string libpq could not parse."""
    found: list[str] = []
    url = re.match(r"^[a-z][a-z0-9+.-]*://([^/?#]*)@", text, re.IGNORECASE)
    if url and ":" in url.group(1):
        found.append(url.group(1).split(":", 1)[1])
    found.extend(re.findall(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", text))
    return [candidate for candidate in found if candidate]


def service_file_paths(env: Mapping[str, str]) -> list[Path]:
    """The pg_service.conf files libpq reads, in its order (user file first)."""
    paths: list[Path] = []
    if env.get("PGSERVICEFILE"):
        paths.append(Path(env["PGSERVICEFILE"]))
    else:
        paths.append(Path(env.get("HOME", str(Path.home()))) / ".pg_service.conf")
    if env.get("PGSYSCONFDIR"):
        paths.append(Path(env["PGSYSCONFDIR"]) / "pg_service.conf")
    # Debian's libpq is built with this sysconfdir; psycopg's wheel libpq asks PGSYSCONFDIR.
    paths.append(Path("/etc/postgresql-common/pg_service.conf"))
    return paths


def _read_service(name: str, env: Mapping[str, str]) -> dict[str, str] | None:
    for path in service_file_paths(env):
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # libpq keys are case-sensitive
        try:
            parser.read(path, encoding="utf-8")
        except configparser.Error as exc:
            raise InputError(
                f"service file {path} cannot be read ({type(exc).__name__})",
                "Fix the file's syntax: [servicename] sections with key=value lines.",
                title="Bad service file",
            ) from None
        if parser.has_section(name):
            return {key: value.strip() for key, value in parser.items(name)}
    return None


def _libpq_knows_service(name: str) -> bool:
    """Ask libpq itself, for service files in places only its compiled-in defaults know."""
    # A non-existent socket directory keeps the probe from reaching any server.
    probe = pq.PGconn.connect_start(make_conninfo(service=name, host="/nonexistent-pgtide-probe").encode())
    try:
        message = (probe.error_message or b"").decode(errors="replace")
        return "definition of service" not in message
    finally:
        probe.finish()


#: libpq parameters with a fixed set of values; libpq itself reports a wrong one only at
#: connect time, as if the server were at fault (e.g. "the TLS handshake failed").
_ENUMERATED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
})


@dataclass(frozen=True, repr=False)
class Endpoint:
    """A PostgreSQL server (and database) to connect to.

    ``params`` are the libpq parameters the user gave, exactly as libpq parsed them;
    ``defaults`` are what the service file and the PG* environment supplied at parse time,
    kept only so the endpoint can describe itself. libpq applies both again when connecting.
    """

    params: Mapping[str, str]
    defaults: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None = None, *, env: Mapping[str, str] | None = None, **overrides: str) -> Endpoint:
        """Build an endpoint from a URL, keyword DSN, service name or nothing (environment)."""
        env = os.environ if env is None else env
        text = (text or "").strip()
        scheme = re.match(r"^([a-z][a-z0-9+.-]*)://", text, re.IGNORECASE)
        if scheme and scheme.group(1).lower() not in ("postgres", "postgresql"):
            raise InputError(
                f"'{scheme.group(1)}://' is not a PostgreSQL connection URL",
                "Use a postgresql:// or postgres:// URL.",
                title="Bad connection string",
            )
        try:
            params = conninfo_to_dict(text)
        except psycopg.Error as exc:
            raise InputError(
                _sanitize_libpq_message(str(exc), _secret_candidates(text)),
                URL_REMEDY,
                title="Bad connection string",
            ) from None
        params.update({key: value for key, value in overrides.items() if value is not None})
        clean = {key: str(value) for key, value in params.items() if value is not None}
        endpoint = cls(MappingProxyType(clean), MappingProxyType(cls._lookup_defaults(clean, env)))
        endpoint._check_values()
        return endpoint

    def _check_values(self) -> None:
        """Refuse values libpq would only trip over when connecting, with a misleading error."""
        port = self.get("port")
        if port is not None:
            # Several hosts take a comma-separated port list; an empty entry means the default.
            for part in port.split(","):
                if part.strip() and not (part.strip().isdigit() and 0 < int(part.strip()) < 65536):
                    raise InputError(
                        f"port must be a number from 1 to 65535, not {part.strip()!r}",
                        "Write the port as digits after the host (postgresql://user@host:5432/db) or as port=5432.",
                        title="Bad connection string",
                    )
        for key, allowed in _ENUMERATED.items():
            value = self.get(key)
            if value is not None and value not in allowed:
                raise InputError(
                    f"{key} must be one of {', '.join(allowed)}, not {value!r}",
                    f"Fix {key} in the connection string (e.g. {key}={allowed[-1]}).",
                    title="Bad connection string",
                )

    @staticmethod
    def _lookup_defaults(params: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
        defaults: dict[str, str] = {}
        env_names = _libpq_env_vars()
        service = params.get("service") or env.get("PGSERVICE")
        if service:
            found = _read_service(service, env)
            if found is None:
                if not _libpq_knows_service(service):
                    searched = ", ".join(str(path) for path in service_file_paths(env))
                    raise InputError(
                        f"service '{service}' is not defined in any service file (searched {searched})",
                        "Add a [" + service + "] section to ~/.pg_service.conf, or point PGSERVICEFILE at "
                        "the file that defines it.",
                        title="Unknown service",
                    )
                found = {}
            defaults.update(found)
        for key, var in env_names.items():
            if key not in defaults and env.get(var) and key not in SECRET_KEYS:
                defaults[key] = env[var]
        return defaults

    # -- what the endpoint points at -------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The effective value of a libpq parameter (explicit, then service file, then env)."""
        return self.params.get(key) or self.defaults.get(key) or None

    @property
    def host(self) -> str:
        return self.get("host") or self.get("hostaddr") or "localhost"

    @property
    def port(self) -> str:
        return self.get("port") or "5432"

    @property
    def user(self) -> str:
        return self.get("user") or getpass.getuser()

    @property
    def dbname(self) -> str:
        return self.get("dbname") or self.user

    @property
    def password(self) -> str | None:
        """The explicitly given password, if any (libpq may still find one in .pgpass or env)."""
        return self.params.get("password") or None

    def with_dbname(self, dbname: str) -> Endpoint:
        """The same server, another database."""
        return self.with_params(dbname=dbname)

    def with_params(self, **changes: str | None) -> Endpoint:
        """A copy with parameters set (a value of None removes the parameter)."""
        params = dict(self.params)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return Endpoint(MappingProxyType(params), self.defaults)

    def without_password(self) -> Endpoint:
        return self.with_params(**dict.fromkeys(SECRET_KEYS))

    # -- connecting -----------------------------------------------------------------------

    def connect_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``: the user's parameters over our defaults."""
        kwargs: dict[str, Any] = dict(CONNECTION_DEFAULTS)
        kwargs.update(self.params)
        kwargs.update(extra)
        return kwargs

    def conninfo(self, *, include_password: bool = True, **extra: str) -> str:
        """A keyword connection string (for libpq-based tools). Never display it."""
        kwargs = self.connect_kwargs(**extra)
        if not include_password:
            for key in SECRET_KEYS:
                kwargs.pop(key, None)
        return make_conninfo(**kwargs)

    # -- display ---------------------------------------------------------------------------

    def redacted(self) -> str:
        """``postgresql://user:***@host:port/dbname?...`` — the only form ever shown."""
        host = self.host
        hosts = []
        for one in host.split(","):
            if ":" in one and not one.startswith("/"):
                hosts.append(f"[{one}]")
            else:
                hosts.append(quote(one, safe=""))
        userinfo = quote(self.user, safe="")
        if self.password or self.params.get("sslpassword"):
            userinfo += ":***"
        query = "&".join(
            f"{key}={quote(value, safe='/')}"
            for key, value in sorted(self.params.items())
            if key not in _HIDDEN_IN_DISPLAY and key not in SECRET_KEYS
        )
        url = f"postgresql://{userinfo}@{','.join(hosts)}:{self.port}/{quote(self.dbname, safe='')}"
        if self.get("service"):
            url += f"?service={quote(self.get('service') or '', safe='')}"
            if query:
                url += "&" + query
        elif query:
            url += "?" + query
        return url

    def to_url(self) -> str:
        """The user's own parameters as a URL, without any secret: what a profile stores.

        Unlike :meth:`redacted`, nothing from the environment or a service file is baked in,
        so loading it later lets libpq apply the environment of that day again.
        """
        params = {key: value for key, value in self.params.items() if key not in SECRET_KEYS}
        hosts = params.pop("host", "").split(",")
        ports = params.pop("port", "").split(",")
        if len(ports) == 1:
            ports = ports * len(hosts)  # libpq: one port applies to every host
        pairs = []
        for host, port in zip(hosts, ports, strict=False):
            shown = f"[{host}]" if ":" in host and not host.startswith("/") else quote(host, safe="")
            pairs.append(shown + (f":{port}" if port else ""))
        user = params.pop("user", "")
        dbname = params.pop("dbname", "")
        netloc = (quote(user, safe="") + "@" if user else "") + ",".join(pairs)
        url = f"postgresql://{netloc}/{quote(dbname, safe='')}" if dbname else f"postgresql://{netloc}"
        if params:
            url += "?" + "&".join(f"{key}={quote(value, safe='/')}" for key, value in sorted(params.items()))
        return url

    @property
    def identity(self) -> str:
        """``user@host:port``: what a stored password belongs to (a role on a server)."""
        return f"{self.user}@{self.host}:{self.port}"

    def redact(self, text: str) -> str:
        """Remove this endpoint's secrets from a message (server or tool output)."""
        for key in SECRET_KEYS:
            secret = self.params.get(key)
            if secret:
                text = text.replace(secret, "***")
                text = text.replace(quote(secret, safe=""), "***")
        return text

    def __hash__(self) -> int:
        return hash((frozenset(self.params.items()), frozenset(self.defaults.items())))

    def __repr__(self) -> str:
        return f"Endpoint({self.redacted()!r})"

    def __str__(self) -> str:
        return self.redacted()
