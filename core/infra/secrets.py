"""Passwords in the OS keyring, never in a file written by pgtide.

A stored password belongs to a role on a server, not to a profile: it is kept under the
service name ``pgtide`` with ``endpoint.identity`` (``user@host:port``) as the user name,
so every profile that connects as that role shares it.

Only a real OS keyring is used (macOS Keychain, Secret Service, KWallet, Windows
Credential Locker). ``keyrings.alt`` backends keep passwords in plain or weakly encrypted
files, which is exactly what this module exists to avoid, so they are refused like a
missing keyring. Without a keyring, libpq's own conventions still work untouched:
``~/.pgpass``, ``PGPASSWORD`` and service files.

No function here puts a password into an exception, a log record or a return value meant
for display.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import keyring
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError, PasswordDeleteError

from .endpoint import Endpoint
from .errors import EnvironmentProblem

__all__ = [
    "PGPASS_REMEDY",
    "SERVICE_NAME",
    "delete_password",
    "get_password",
    "keyring_status",
    "password_source",
    "set_password",
    "with_stored_password",
]

SERVICE_NAME = "pgtide"

PGPASS_REMEDY = (
    "Without an OS keyring, add a line host:port:*:user:password to ~/.pgpass (mode 0600; "
    "write : and \\ in the password as \\: and \\\\) or set PGPASSWORD."
)

# A user name no one has: probing with it proves the keyring answers, and finds nothing.
_PROBE_USER = "pgtide-keyring-probe"

log = logging.getLogger("pgtide.secrets")


def _refusal(backend: KeyringBackend) -> str | None:
    """Why this backend must not hold our passwords, or None when it may."""
    module = type(backend).__module__
    if isinstance(backend, fail.Keyring):
        return "no OS keyring is available on this machine"
    if isinstance(backend, null.Keyring):
        return "the keyring is disabled (null backend)"
    if module == "keyrings.alt" or module.startswith("keyrings.alt."):
        return (
            f"the keyring backend {type(backend).__name__} ({module}) keeps passwords in files; "
            "pgtide only uses a real OS keyring"
        )
    return None


def _backend() -> tuple[KeyringBackend | None, str]:
    """The backend to use and, when there is none, a sentence saying why."""
    try:
        configured = keyring.get_keyring()
        candidates = list(configured.backends) if isinstance(configured, chainer.ChainerBackend) else [configured]
    except Exception as exc:
        # plugin) must read as "no keyring", never crash pgtide: libpq's own files still work.
        return None, f"the keyring cannot be loaded ({type(exc).__name__})"
    if isinstance(configured, chainer.ChainerBackend):
        if not candidates:
            return None, "no OS keyring is available on this machine (the keyring chainer found no backend)"
        usable = [backend for backend in candidates if _refusal(backend) is None]
        if not usable:
            return None, _refusal(candidates[0]) or "no usable keyring backend"
        # The chainer would write to its first backend, which may be a plaintext one
        # when keyrings.alt is installed: talk to the best real keyring directly instead.
        chosen = usable[0]
    else:
        reason = _refusal(configured)
        if reason is not None:
            return None, reason
        chosen = configured
    try:
        chosen.get_password(SERVICE_NAME, _PROBE_USER)
    except KeyringError as exc:
        return None, f"the OS keyring ({type(chosen).__name__}) does not answer ({type(exc).__name__})"
    return chosen, ""


def keyring_status() -> tuple[bool, str]:
    """Whether a usable OS keyring exists; if not, a sentence saying why (else its name)."""
    backend, reason = _backend()
    if backend is None:
        return False, reason
    return True, f"passwords are kept in the OS keyring ({_describe(backend)})"


def _describe(backend: KeyringBackend) -> str:
    name = getattr(type(backend), "name", None)
    return name if isinstance(name, str) and name else type(backend).__name__


def get_password(endpoint: Endpoint) -> str | None:
    """The password stored for ``endpoint.identity``, or None (also when there is no keyring)."""
    backend, _reason = _backend()
    if backend is None:
        return None
    try:
        return backend.get_password(SERVICE_NAME, endpoint.identity)
    except KeyringError as exc:
        log.warning("reading the password for %s from the keyring failed: %s", endpoint.identity, type(exc).__name__)
        return None


def set_password(endpoint: Endpoint, password: str) -> None:
    """Store ``password`` for ``endpoint.identity``; EnvironmentProblem when there is no keyring."""
    backend, reason = _backend()
    if backend is None:
        raise EnvironmentProblem(
            f"cannot store the password for {endpoint.identity}: {reason}",
            PGPASS_REMEDY,
            title="No OS keyring",
        )
    try:
        backend.set_password(SERVICE_NAME, endpoint.identity, password)
    except KeyringError as exc:
        # The backend's message is not shown: it could quote what it was given.
        raise EnvironmentProblem(
            f"the OS keyring ({_describe(backend)}) refused to store the password for "
            f"{endpoint.identity} ({type(exc).__name__})",
            "Unlock the keyring and try again. " + PGPASS_REMEDY,
            title="Keyring error",
        ) from None
    log.info("stored the password for %s in the OS keyring", endpoint.identity)


def delete_password(endpoint: Endpoint) -> bool:
    """Forget the password of ``endpoint.identity``; False when none was stored (or no keyring)."""
    backend, _reason = _backend()
    if backend is None:
        return False
    try:
        if backend.get_password(SERVICE_NAME, endpoint.identity) is None:
            return False
        backend.delete_password(SERVICE_NAME, endpoint.identity)
    except PasswordDeleteError:
        return False
    except KeyringError as exc:
        raise EnvironmentProblem(
            f"the OS keyring ({_describe(backend)}) could not delete the password for "
            f"{endpoint.identity} ({type(exc).__name__})",
            "Unlock the keyring and try again, or remove the entry with the system's keyring tool.",
            title="Keyring error",
        ) from None
    log.info("deleted the password for %s from the OS keyring", endpoint.identity)
    return True


def with_stored_password(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with the keyring's password when it has none of its own; else unchanged.

    When the keyring has nothing, libpq still applies PGPASSWORD, ~/.pgpass and service
    files by itself at connect time.
    """
    if endpoint.password:
        return endpoint
    stored = get_password(endpoint)
    if not stored:
        return endpoint
    return endpoint.with_params(password=stored)


# -- where libpq would find a password (for display) ------------------------------------------


def _pgpass_path(endpoint: Endpoint) -> Path:
    explicit = endpoint.get("passfile") or os.environ.get("PGPASSFILE")
    if explicit:
        return Path(explicit).expanduser()
    return Path.home() / ".pgpass"


def _split_pgpass_line(line: str) -> list[str]:
    """Split on unescaped colons; ``\\:`` and ``\\\\`` are a literal colon and backslash."""
    fields: list[str] = []
    current: list[str] = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def _pgpass_has_line(path: Path, endpoint: Endpoint) -> bool:
    host = endpoint.host
    if not host or host.startswith("/"):
        host = "localhost"  # libpq matches socket connections against "localhost"
    wanted = (host, endpoint.port, endpoint.dbname, endpoint.user)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = _split_pgpass_line(raw)
        if len(fields) < 5:
            continue
        if all(pattern in ("*", value) for pattern, value in zip(fields[:4], wanted, strict=True)):
            return True
    return False


def password_source(endpoint: Endpoint) -> str:
    """One sentence saying where the password for ``endpoint`` comes from. Never the password."""
    if endpoint.password:
        return "password given explicitly"
    if get_password(endpoint):
        return "password from the OS keyring"
    if endpoint.defaults.get("password"):
        return f"no stored password: libpq will use the one in service file entry '{endpoint.get('service')}'"
    if os.environ.get("PGPASSWORD"):
        return "no stored password: libpq will use PGPASSWORD"
    path = _pgpass_path(endpoint)
    try:
        info = path.stat()
    except OSError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode):
        if os.name != "nt" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return f"no stored password: libpq ignores {path} because others can read it (chmod 0600 {path})"
        if _pgpass_has_line(path, endpoint):
            return f"no stored password: libpq will use the matching line in {path}"
        return f"no stored password: {path} has no line for {endpoint.identity}"
    return "no stored password: libpq will use PGPASSWORD, ~/.pgpass or a service file"
