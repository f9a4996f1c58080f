"""This project's commands (alembic, python -m ...) run as subprocesses against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from sqlalchemy import URL

from migrations import ALEMBIC_INI

PROJECT = ALEMBIC_INI.parent


def alembic_env(url: URL, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess that runs alembic or python against `url`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATION_")}
    env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    env.update(extra or {})
    return env


def run(
    args: list[str],
    url: URL,
    *,
    check: bool = True,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command of this project (alembic, python -m ...) against `url`."""
    completed = subprocess.run(
        args, cwd=PROJECT, env=alembic_env(url, env), capture_output=True, text=True, timeout=timeout
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"{args} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")
    return completed


def alembic(*args: str, url: URL, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), *args], url, check=check)
