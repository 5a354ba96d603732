"""Logging to a file in the user's log dir, with secrets scrubbed as a last line of defence.

Code logs redacted endpoints only; the filter below still rewrites anything that looks like
a password in a URL or a keyword string, in case a server or tool message carries one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .paths import log_dir

_URL_PASSWORD = re.compile(r"(?P<scheme>postgres(?:ql)?://[^:/@\s]*):(?P<secret>[^@\s]+)@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<key>\b(?:password|sslpassword)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """Replace passwords in URLs and keyword strings with ``***``."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}:***@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m.group('key')}***", text)


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def log_file() -> Path:
    return log_dir() / "pgtide.log"


_handler: logging.FileHandler | None = None


def configure(level: int = logging.INFO) -> Path:
    """Send pgtide's log records to the log file; again if the log dir has changed since."""
    global _handler
    path = log_file()
    if _handler is not None and Path(_handler.baseFilename) == path.resolve():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger("pgtide")
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler
    return path
