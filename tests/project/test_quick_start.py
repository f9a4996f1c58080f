"""The README's quick start: two commands, and the main job installs only what it runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

from tests.helpers.commands import PROJECT
from tests.helpers.readme import quick_start_commands

PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())


def distribution(requirement: str) -> str:
    """The normalized name of a requirement such as 'psycopg[binary]>=3.2'."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def test_the_quick_start_is_exactly_two_commands() -> None:
    assert quick_start_commands() == ["uv run --no-dev python -m migrations", "uv run pytest"]


def test_the_main_job_installs_the_projects_dependencies_and_none_of_the_tools() -> None:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv runs the quick start; it is on PATH, or uv run sets UV"
    main_job = quick_start_commands()[0].split()
    options = [argument for argument in main_job[2:] if argument.startswith("--")]
    # What `uv run <options>` syncs, read from uv.lock without installing anything.
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "--no-header", "--no-annotate", *options],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {distribution(line) for line in exported.splitlines() if "==" in line}
    tools = {
        distribution(requirement)
        for group in PYPROJECT["dependency-groups"].values()
        for requirement in group
        if isinstance(requirement, str)
    }

    assert {distribution(requirement) for requirement in PYPROJECT["project"]["dependencies"]} <= installed
    assert not installed & tools, f"the main job would install {sorted(installed & tools)}"
