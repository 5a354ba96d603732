"""Where a foreign source is: ``sqlite:///path``, a plain SQLite file path, ``mysql://`` /
``mariadb://`` and ``mongodb://`` / ``mongodb+srv://`` URLs.

Secrets are handled as for PostgreSQL endpoints: a password typed into the URL is kept in
memory only, never shown (``str``/``repr``/``redacted`` drop it), never written to a profile
or record (``to_url`` drops it too). Without one in the URL the password comes from the OS
keyring (``pgtide profile`` stores it there), then ``PGTIDE_SOURCE_PASSWORD``, then — at a
terminal — a prompt the front end shows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from ..infra.errors import InputError
from .source import Kind

_SCHEMES: dict[str, Kind] = {"sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql",
                             "mongodb": "mongodb", "mongodb+srv": "mongodb"}
_DEFAULT_PORTS: dict[Kind, int] = {"mysql": 3306, "mongodb": 27017, "sqlite": 0}
#: The environment variable a password may come from when neither the URL nor the keyring has one.
PASSWORD_ENV = "PGTIDE_SOURCE_PASSWORD"

FOREIGN_REMEDY = ("Use sqlite:///ABSOLUTE/PATH.db (or a path to the file), mysql://USER@HOST:3306/DB, "
                  "mariadb://USER@HOST:3306/DB or mongodb://USER@HOST:27017/DB; keep the password out of the "
                  "URL (pgtide asks for it, or reads the OS keyring or " + PASSWORD_ENV + ").")

_SQLITE_MAGIC = b"SQLite format 3\x00"


def looks_foreign(text: str | None) -> bool:
    """Whether ``text`` names a foreign source rather than a PostgreSQL one."""
    if not text:
        return False
    text = text.strip()
    scheme = re.match(r"^([a-z][a-z0-9+.-]*)://", text, re.IGNORECASE)
    if scheme:
        return scheme.group(1).lower() in _SCHEMES
    if text.lower().startswith("sqlite:"):
        return True
    return _is_sqlite_file(Path(text).expanduser())


def _is_sqlite_file(path: Path) -> bool:
    if "=" in path.name or not path.is_file():
        return False
    try:
        with path.open("rb") as handle:
            return handle.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class ForeignEndpoint:
    """A foreign source server (or file) and the database on it."""

    kind: Kind
    #: The scheme as the user wrote it ("mariadb", "mongodb+srv"), kept for display.
    scheme: str
    host: str = ""
    port: int = 0
    user: str = ""
    database: str = ""
    #: SQLite: the database file.
    path: str = ""
    #: Query options (MongoDB's replicaSet, authSource, tls...); never secrets.
    options: tuple[tuple[str, str], ...] = ()
    password: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> ForeignEndpoint:
        text = (text or "").strip()
        if not text:
            raise InputError("no source given", FOREIGN_REMEDY, title="Bad source")
        scheme_match = re.match(r"^([a-z][a-z0-9+.-]*):", text, re.IGNORECASE)
        scheme = scheme_match.group(1).lower() if scheme_match else ""
        if scheme == "sqlite" or (not scheme_match and _is_sqlite_file(Path(text).expanduser())):
            return cls._sqlite(text, scheme_match is not None)
        if scheme not in _SCHEMES:
            raise InputError(f"{_safe(text)!r} is not a source pgtide can read", FOREIGN_REMEDY, title="Bad source")
        parts = urlsplit(text)
        kind = _SCHEMES[scheme]
        try:
            port = parts.port or (0 if scheme == "mongodb+srv" else _DEFAULT_PORTS[kind])
        except ValueError:
            raise InputError(f"the port in {_safe(text)} is not a number", FOREIGN_REMEDY, title="Bad source") from None
        if not parts.hostname:
            raise InputError(f"{_safe(text)} names no host", FOREIGN_REMEDY, title="Bad source")
        if "," in (parts.netloc.rpartition("@")[2]):
            raise InputError(f"{_safe(text)} names several hosts",
                             "Give one host: the driver finds the replica set's other members itself.",
                             title="Bad source")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise InputError(f"{_safe(text)} names no database",
                             "Add the database to the URL: …/DBNAME.", title="Bad source")
        if "/" in database:
            raise InputError(f"{database!r} is not a database name", FOREIGN_REMEDY, title="Bad source")
        options = tuple(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)))
        secret_keys = {k for k, _ in options if k.lower() in ("password", "pwd", "authmechanismproperties")}
        if secret_keys:
            raise InputError(f"the URL carries a secret in its query ({', '.join(sorted(secret_keys))})",
                             "Remove it: pgtide asks for the password, or reads the OS keyring or "
                             + PASSWORD_ENV + ".", title="Bad source")
        return cls(kind=kind, scheme=scheme, host=parts.hostname, port=port,
                   user=unquote(parts.username or ""), database=database, options=options,
                   password=unquote(parts.password) if parts.password is not None else None)

    @classmethod
    def _sqlite(cls, text: str, has_scheme: bool) -> ForeignEndpoint:
        if has_scheme:
            rest = text[len("sqlite:"):]
            if rest.startswith("///"):
                raw = "/" + rest[3:].lstrip("/") if rest[3:4] == "/" else rest[2:]
            elif rest.startswith("//"):
                raise InputError(f"{text!r}: an SQLite URL has no host",
                                 "Write sqlite:///absolute/path.db (three slashes) or give the path alone.",
                                 title="Bad source")
            else:
                raw = rest
            raw = unquote(raw.split("?", 1)[0])
        else:
            raw = text
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if not path.exists():
            raise InputError(f"no SQLite file at {path}", "Check the path; pgtide never creates a source file.",
                             title="Bad source")
        if not _is_sqlite_file(path):
            raise InputError(f"{path} is not an SQLite 3 database", "Give the path of the .db/.sqlite file.",
                             title="Bad source")
        return cls(kind="sqlite", scheme="sqlite", path=str(path.resolve()), database=path.stem)

    # -- what may be shown, stored and compared ---------------------------------------------

    def redacted(self) -> str:
        return self.to_url()

    def to_url(self) -> str:
        """The URL without its password: the only form shown, logged, or kept in a profile."""
        if self.kind == "sqlite":
            return "sqlite://" + quote(self.path)
        user = quote(self.user, safe="") + "@" if self.user else ""
        port = f":{self.port}" if self.port and self.port != _DEFAULT_PORTS[self.kind] else ""
        query = "?" + urlencode(self.options) if self.options else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}{port}/{quote(self.database, safe='')}{query}"

    @property
    def identity(self) -> str:
        """What names this source across spellings: the keyring key and the migration id's input."""
        if self.kind == "sqlite":
            return f"sqlite:{self.path}"
        return f"{self.kind}://{self.user}@{self.host.lower()}:{self.port}/{self.database}"

    def with_password(self, password: str | None) -> ForeignEndpoint:
        return replace(self, password=password)

    def resolved_password(self) -> str | None:
        """The password to connect with: the URL's, the keyring's, then the environment's."""
        if self.password is not None or self.kind == "sqlite":
            return self.password
        from ..infra.secrets import get_password

        stored = get_password(self)  # type: ignore[arg-type]  # the keyring keys on .identity alone
        if stored:
            return stored
        return os.environ.get(PASSWORD_ENV) or None

    def redact(self, text: str) -> str:
        """``text`` with this endpoint's password (raw and URL-encoded) removed."""
        secret = self.resolved_password() if self.password is None else self.password
        if secret:
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                if form:
                    text = text.replace(form, "********")
        return text

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"ForeignEndpoint({self.redacted()!r})"


def _safe(text: str) -> str:
    """A user's URL for an error message, without the password it may carry."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1********@", text)
