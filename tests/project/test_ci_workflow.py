"""The GitHub workflow: every supported PostgreSQL, healthy before use, and the README's own commands."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml
from sqlalchemy import make_url

from tests.helpers.commands import PROJECT

pytestmark = pytest.mark.migrations

WORKFLOW = PROJECT / ".github" / "workflows" / "ci.yml"


def readme_command(section: str, word: str) -> str:
    """The command containing `word` in README section `section`'s first sh block, without its comment."""
    found = re.search(rf"^## {section}\n(.*?)^## ", (PROJECT / "README.md").read_text(), re.M | re.S)
    assert found, f"README.md has no '## {section}' section"
    block = re.search(r"^```sh\n(.*?)^```", found[1], re.M | re.S)
    assert block, f"README.md's {section} has no ```sh block"
    [command] = [line.split("#")[0].strip() for line in block[1].splitlines() if word in line]
    return command


def readme_test_command() -> str:
    """The command in the README's quick start that runs the tests."""
    return readme_command("Quick start", "pytest")


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
    assert re.search(r'--health-cmd "pg_isready\b[^"]*"', service["options"]), service["options"]
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


def test_the_steps_set_up_uv_lint_type_check_and_run_exactly_the_readme_test_command(
    job: dict[str, Any],
) -> None:
    steps = job["steps"]
    actions = [step["uses"].split("@")[0] for step in steps if "uses" in step]
    assert actions == ["actions/checkout", "astral-sh/setup-uv"]
    assert all("uses" in step for step in steps[:2]), "checkout and uv come before any command"
    assert [step["run"] for step in steps if "run" in step] == [
        "uv sync --locked",
        "uv run ruff check .",
        "uv run ruff format --check .",
        "uv run mypy",
        readme_test_command(),
        readme_command("Before you deploy", "migrations.gate"),
    ]


def test_the_checkout_fetches_the_tags_and_history_the_gates_previous_release_check_needs(
    job: dict[str, Any],
) -> None:
    [checkout] = [step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["fetch-depth"] == 0  # GitHub's default, 1, has no tag and no previous commit
