"""Where pgtide keeps things on disk. One place decides, so tests can point it elsewhere.

Each location can be overridden by an environment variable (``PGTIDE_CONFIG_DIR``,
``PGTIDE_STATE_DIR``, ``PGTIDE_LOG_DIR``) — tests use that, and so can users who keep
profiles in a repository. The job store lives in the *state* dir, never in $TMPDIR: it is
what a resumed migration needs after a reboot.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "pgtide"


def _dir(env_var: str, default: str) -> Path:
    return Path(os.environ.get(env_var) or default)


def config_dir() -> Path:
    return _dir("PGTIDE_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME, appauthor=False))


def profiles_dir() -> Path:
    return config_dir() / "profiles"


def state_dir() -> Path:
    return _dir("PGTIDE_STATE_DIR", platformdirs.user_state_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    return _dir("PGTIDE_LOG_DIR", platformdirs.user_log_dir(APP_NAME, appauthor=False))
