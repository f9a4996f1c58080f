"""The GitHub workflow, read as a runner would run it: every supported PostgreSQL, healthy before
use, the README's own commands, and no mistake actionlint or the workflow schema can see."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url

from tests.helpers.commands import PROJECT
from tests.helpers.readme import quick_start_commands, shell_commands

pytestmark = pytest.mark.migrations

WORKFLOW = PROJECT / ".github" / "workflows" / "ci.yml"


def readme_test_command() -> str:
    """The command in the README's quick start that runs the tests."""
    [command] = [command for command in quick_start_commands() if "pytest" in command]
    return command


def readme_gate_command() -> str:
    """The command in the README's "Before you deploy" that runs the deploy gate."""
    [command] = [command for command in shell_commands("Before you deploy") if "migrations.gate" in command]
    return command


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    assert len(jobs) == 1, f"expected one job in {WORKFLOW}, found {list(jobs)}"
    [only] = jobs.values()
    return dict(only)


def matrix_key(job: dict[str, Any]) -> str:
    [key] = job["strategy"]["matrix"]
    return str(key)


def test_the_matrix_covers_postgresql_15_to_18_and_squawk_judges_by_the_oldest(job: dict[str, Any]) -> None:
    versions = job["strategy"]["matrix"][matrix_key(job)]
    assert versions == ["15", "16", "17", "18"]
    assert job["strategy"]["fail-fast"] is False
    pg_version = tomllib.loads((PROJECT / ".squawk.toml").read_text())["pg_version"]
    assert pg_version.split(".")[0] == min(versions, key=int)


def test_the_service_runs_the_matrix_version_and_is_healthy_before_the_steps(job: dict[str, Any]) -> None:
    [service] = job["services"].values()
    assert service["image"] == f"postgres:${{{{ matrix.{matrix_key(job)} }}}}"
    # Over TCP: while the image's init scripts run, its temporary server listens on the socket only.
    assert re.search(r'--health-cmd "pg_isready -h 127\.0\.0\.1\b[^"]*"', service["options"]), service[
        "options"
    ]
    for option in ("--health-interval", "--health-timeout", "--health-retries"):
        assert option in service["options"]
    assert service["env"]["POSTGRES_PASSWORD"]


def test_database_url_points_at_the_service_with_its_password(job: dict[str, Any]) -> None:
    [service] = job["services"].values()
    host_port, container_port = (int(port) for port in service["ports"][0].split(":"))
    url = make_url(job["env"]["DATABASE_URL"])
    assert container_port == 5432
    assert (url.host, url.port) == ("localhost", host_port)
    assert url.username == service["env"].get("POSTGRES_USER", "postgres")
    assert url.password == service["env"]["POSTGRES_PASSWORD"]


def test_the_steps_set_up_uv_lint_type_check_and_run_exactly_the_readme_test_and_gate_commands(
    job: dict[str, Any],
) -> None:
    steps = job["steps"]
    actions = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert actions == ["actions/checkout", "astral-sh/setup-uv"]
    assert all("uses" in step for step in steps[:2]), "checkout and uv come before any command"
    assert steps[0]["with"]["fetch-depth"] == 0, "a deploy gate needs the whole history and its tags"
    assert re.fullmatch(r"\d+\.\d+\.\d+", steps[1]["with"]["version"]), "uv's version is pinned"
    assert [step["run"] for step in steps if "run" in step] == [
        "uv sync --locked",
        "uv run ruff check .",
        "uv run ruff format --check .",
        "uv run mypy",
        readme_test_command(),
        readme_gate_command(),
    ]


def test_the_job_leaves_pythonunbuffered_unset_as_any_runner_does(job: dict[str, Any]) -> None:
    # Set, it hides output that a test reads before Python flushes it (issue 13, item 5).
    workflow = yaml.safe_load(WORKFLOW.read_text())
    environments = [
        workflow.get("env", {}),
        job.get("env", {}),
        *(step.get("env", {}) for step in job["steps"]),
    ]
    assert not any("PYTHONUNBUFFERED" in environment for environment in environments)


def lint(workflow: Path) -> list[str]:
    """What actionlint and the GitHub-workflow schema (check-jsonschema's vendored copy) report."""
    found = []
    for command in (
        [str(Path(sys.executable).with_name("actionlint")), "-no-color", str(workflow)],
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ],
    ):
        checked = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if checked.returncode != 0:
            found.append(checked.stdout + checked.stderr)
    return found


def test_actionlint_and_the_workflow_schema_find_nothing_wrong(tmp_path: Path) -> None:
    assert lint(WORKFLOW) == []

    # Both can fail: an expression naming a matrix key that does not exist, a key jobs do not have.
    broken = tmp_path / "ci.yml"
    broken.write_text(
        WORKFLOW.read_text()
        .replace("${{ matrix.postgres }}", "${{ matrix.postgress }}")
        .replace("timeout-minutes:", "timeout-minute:")
    )
    actionlint, schema = lint(broken)
    assert 'property "postgress" is not defined' in actionlint
    assert "timeout-minute" in schema
