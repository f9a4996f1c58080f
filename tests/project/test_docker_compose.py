"""docker-compose.yml, read as Docker Compose would run it: Docker cannot run on the CI machine.

The files are checked against the compose specification's schema, then merged and interpolated
as Compose does (tests/helpers/compose.py), and what each container would get is checked: the
environment the app reads, the mounts it could write through, the commands it runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database.scratch import scratch_database
from migrations.database.url import parse_database_url
from tests.helpers.commands import PROJECT
from tests.helpers.compose import MissingVariableError, load
from tests.helpers.forked_cli import run_alembic
from tests.helpers.readme import quick_start_commands, section
from tests.helpers.snapshots import versions

COMPOSE = PROJECT / "docker-compose.yml"
PUBLISH_PORT = PROJECT / "docker-compose.port.yml"
WORKFLOW = PROJECT / ".github" / "workflows" / "ci.yml"
ENV = {"POSTGRES_PASSWORD": "local-only"}
APPS = ("migrate", "tests")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE, env=ENV)


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=60)


def test_the_compose_files_follow_the_compose_specification(tmp_path: Path) -> None:
    checked = check_jsonschema(COMPOSE, PUBLISH_PORT)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # The check can fail: a healthcheck whose interval is not a duration.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("interval: 2s", "interval: [2s]"))
    assert check_jsonschema(broken).returncode != 0


def test_without_postgres_password_compose_refuses_to_start() -> None:
    with pytest.raises(MissingVariableError, match="POSTGRES_PASSWORD"):
        load(COMPOSE, env={})


def test_db_is_a_pinned_postgres_18_healthy_only_once_it_accepts_tcp(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:18\.\d+-bookworm", db["image"]), db["image"]
    assert db["environment"]["POSTGRES_PASSWORD"] == ENV["POSTGRES_PASSWORD"]
    # The image's init scripts run a server on the Unix socket only: the check must use TCP.
    test = db["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"]
    assert test[test.index("-h") + 1] == "127.0.0.1"
    volume, mount = db["volumes"][0].split(":")
    assert volume in compose["volumes"]
    assert mount == "/var/lib/postgresql"  # from 18 on, not .../data


def test_db_publishes_no_port_unless_asked_with_the_port_file_and_postgres_port(
    compose: dict[str, Any],
) -> None:
    assert "ports" not in compose["services"]["db"]

    published = load(COMPOSE, PUBLISH_PORT, env={**ENV, "POSTGRES_PORT": "5433"})
    assert published["services"]["db"]["ports"] == ["127.0.0.1:5433:5432"]
    with pytest.raises(MissingVariableError, match="POSTGRES_PORT"):
        load(COMPOSE, PUBLISH_PORT, env=ENV)


def test_the_app_image_is_pinned_to_the_uv_version_ci_uses(compose: dict[str, Any]) -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["steps"]
    [setup_uv] = [step for step in steps if "setup-uv" in step.get("uses", "")]
    for service in APPS:
        image = compose["services"][service]["image"]
        assert image == f"ghcr.io/astral-sh/uv:{setup_uv['with']['version']}-python3.11-bookworm-slim"


@pytest.mark.parametrize("service", APPS)
def test_an_app_container_can_write_nothing_into_the_checkout(compose: dict[str, Any], service: str) -> None:
    app = compose["services"][service]
    checkout = [volume for volume in app["volumes"] if volume.split(":")[0] == "."]
    assert checkout, f"{service} does not mount the checkout"
    assert all(volume.endswith(":ro") for volume in checkout), checkout
    environment = app["environment"]
    venv = environment["UV_PROJECT_ENVIRONMENT"]
    assert f"venv:{venv}" in app["volumes"]
    assert not any(venv.startswith(volume.split(":")[1]) for volume in checkout)
    assert environment["UV_LOCKED"] == "1"  # uv never rewrites uv.lock
    assert environment["PYTHONDONTWRITEBYTECODE"] == "1"


def test_migrate_runs_the_main_jobs_install_once_db_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["uv", "run", "--no-dev", "alembic", "upgrade", "head"]
    assert quick_start_commands()[0].startswith("uv run --no-dev ")
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


def test_tests_runs_the_readmes_test_command_on_a_copy_without_the_hosts_own_files(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    tests = compose["services"]["tests"]
    assert tests["depends_on"]["db"]["condition"] == "service_healthy"
    shell, flag, script = tests["command"]
    copy, _, run = script.partition(" && exec ")
    assert (shell, flag, run) == ("sh", "-c", quick_start_commands()[1])

    # The copy, run here with /checkout standing for the mounted checkout.
    source = tmp_path / "checkout"
    (source / "tests" / "__pycache__").mkdir(parents=True)
    for name in (".venv/bin/python", ".pgdata/PG_VERSION", ".git/HEAD", ".pytest_cache/x", "pyproject.toml"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text("")
    target = tmp_path / "app"
    target.mkdir()
    subprocess.run(["sh", "-c", copy.replace("/checkout", str(source))], cwd=target, check=True)
    assert sorted(str(path.relative_to(target)) for path in target.rglob("*")) == ["pyproject.toml", "tests"]


def test_a_password_with_url_characters_reaches_the_server_without_a_url(
    compose: dict[str, Any], password_server: URL, tmp_path: Path
) -> None:
    password = password_server.password
    assert password
    assert set("@/:%?#") <= set(password)
    migrate = load(COMPOSE, env={"POSTGRES_PASSWORD": password})["services"]["migrate"]["environment"]

    # What the project builds from migrate's environment: the URL names the host, libpq adds the password.
    url = parse_database_url(migrate["DATABASE_URL"])
    assert (url.host, url.port, url.database, url.password) == ("db", 5432, "student_course", None)
    with scratch_database(password_server) as database:
        local = url.set(host=password_server.host, port=password_server.port, database=database.database)
        result = run_alembic(
            "upgrade", "head", url=local, workdir=tmp_path, env={"PGPASSWORD": migrate["PGPASSWORD"]}
        )

        assert result.returncode == 0, result.output
        assert password not in result.output
        assert versions(database) == [ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_current_head()]


def test_the_readme_runs_compose_so_a_failed_migration_fails_the_script() -> None:
    blocks = re.findall(
        r"^```sh\n(.*?)^```", section("Using an existing server, or docker compose"), re.M | re.S
    )
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert "docker compose run --rm migrate" in commands
    assert "docker compose run --rm tests" in commands
    assert not any(command.startswith("docker compose up migrate") for command in commands)
    assert any(
        command.startswith("POSTGRES_PORT=") and str(PUBLISH_PORT.name) in command for command in commands
    )
    assert "/.env" in (PROJECT / ".gitignore").read_text().splitlines()
