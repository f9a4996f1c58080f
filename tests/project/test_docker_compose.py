"""docker-compose.yml, checked by parsing: Docker cannot run on the CI machine."""

from typing import Any

import pytest
import yaml

from tests.helpers.commands import PROJECT
from tests.helpers.readme import README, quick_start_commands


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())
    return parsed


def test_db_is_postgres_18_with_a_healthcheck_and_a_named_volume(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert db["image"] == "postgres:18"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    volume, mount = db["volumes"][0].split(":")
    assert volume in compose["volumes"]
    assert mount == "/var/lib/postgresql"  # from 18 on, not .../data


def test_the_password_comes_from_the_environment_with_a_local_default(compose: dict[str, Any]) -> None:
    password = compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"]
    assert password == "${POSTGRES_PASSWORD:-postgres}"
    assert "POSTGRES_PASSWORD" in README
    for service in ("migrate", "tests"):
        assert (
            "${POSTGRES_PASSWORD:-postgres}@db:5432/"
            in compose["services"][service]["environment"]["DATABASE_URL"]
        )


def test_migrate_upgrades_to_head_once_db_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["uv", "run", "alembic", "upgrade", "head"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_tests_runs_the_readmes_test_command_against_db(compose: dict[str, Any]) -> None:
    tests = compose["services"]["tests"]
    assert " ".join(tests["command"]) == quick_start_commands()[1]
    assert tests["depends_on"]["db"]["condition"] == "service_healthy"
    assert "@db:5432/" in tests["environment"]["DATABASE_URL"]


def test_the_readme_shows_the_compose_commands() -> None:
    assert "docker compose up migrate" in README
    assert "docker compose run --rm tests" in README
