"""The documented commands work from any directory, not only from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from tests.helpers.commands import PROJECT, alembic_env
from tests.helpers.types import MakeDatabase

HEAD = ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_current_head()
# The checkout's own `alembic`, as `uv run alembic` or an activated .venv runs it.
ALEMBIC = Path(sys.executable).with_name("alembic")


def run_in(directory: Path, args: list[str], url: URL) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in alembic_env(url).items() if key != "PYTHONPATH"}
    completed = subprocess.run(args, cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, f"{args} in {directory}:\n{completed.stdout}\n{completed.stderr}"
    return completed


@pytest.mark.parametrize(
    ("where", "ini"),
    [("elsewhere", str(ALEMBIC_INI)), ("the checkout's parent", f"{PROJECT.name}/alembic.ini")],
    ids=["absolute -c", "relative -c"],
)
def test_alembic_with_the_checkouts_ini_migrates_from_another_directory(
    where: str, ini: str, make_database: MakeDatabase, tmp_path: Path
) -> None:
    directory = tmp_path if where == "elsewhere" else PROJECT.parent
    url = make_database()

    run_in(directory, [str(ALEMBIC), "-c", ini, "upgrade", "head"], url)

    assert run_in(directory, [str(ALEMBIC), "-c", ini, "current"], url).stdout.strip() == f"{HEAD} (head)"


def test_the_main_job_runs_from_another_directory_with_uv_run_directory(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv runs the documented commands; it is on PATH, or uv run sets UV"
    # --no-sync: the suite's own environment stays as it is; the user's command is the same without it.
    command = [uv, "run", "--no-sync", "--directory", str(PROJECT), "python", "-m", "migrations"]

    roster = run_in(tmp_path, command, make_database()).stdout

    assert roster.startswith("Student: Alice\n")
