"""Domain errors: every failure a user can see carries a title, a one-line cause and a remedy.

Front ends show these three fields and nothing else; tracebacks go to the log file.
Messages are built from redacted values only, so an error can be shown, logged or
serialised to JSON without leaking a secret.
"""

from __future__ import annotations


class PgtideError(Exception):
    """Base class of every error pgtide shows to a user."""

    #: Exit code the CLI uses for this kind of error.
    exit_code: int = 1
    default_title: str = "pgtide error"

    def __init__(self, cause: str, remedy: str = "", *, title: str | None = None) -> None:
        self.title = title or self.default_title
        self.cause = cause
        self.remedy = remedy
        super().__init__(cause)

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.title}: {self.cause} — {self.remedy}"
        return f"{self.title}: {self.cause}"

    def to_dict(self) -> dict[str, str]:
        return {"error": type(self).__name__, "title": self.title, "cause": self.cause, "remedy": self.remedy}


class InputError(PgtideError):
    """The user gave something pgtide cannot use (bad URL, bad filter, bad config)."""

    exit_code = 2
    default_title = "Invalid input"


class ConnectError(PgtideError):
    """A server could not be reached or refused us (host, auth, TLS)."""

    exit_code = 3
    default_title = "Cannot connect"


class EnvironmentProblem(PgtideError):
    """The machine or the servers lack something pgtide needs (binaries, settings)."""

    exit_code = 3
    default_title = "Environment problem"


class CheckFailed(PgtideError):
    """A validation check failed; the migration would not be safe."""

    exit_code = 1
    default_title = "Check failed"


class Interrupted(PgtideError):
    """The run was interrupted; it can be resumed."""

    exit_code = 4
    default_title = "Interrupted"


class MigrationFailed(PgtideError):
    """A step on the servers failed; what the step created was removed, and a rerun continues."""

    exit_code = 1
    default_title = "Migration failed"


class CannotStream(InputError):
    """A foreign source keeps no change log pgtide can follow (SQLite, binlog off or not ROW,
    a MongoDB without a replica set): one-shot copies and a refresh every interval still work."""

    default_title = "Cannot stream"
