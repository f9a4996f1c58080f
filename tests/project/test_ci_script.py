"""`.ci/run` on any machine: its server leg uses whatever PostgreSQL exists, or says why it skips.

`.ci/server` is the part of `.ci/run` that finds that server; here it runs with a PATH that has
every command of this machine but PostgreSQL's own (pg_isready, pg_ctlcluster, psql, ...), as
on a machine without a system PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import URL

from migrations.database.embedded import free_port
from tests.helpers.commands import PROJECT

SERVER = PROJECT / ".ci" / "server"
POSTGRESQL_COMMANDS = {"psql", "postgres", "initdb", "pg_wrapper"}


@pytest.fixture(scope="module")
def path_without_postgresql(tmp_path_factory: pytest.TempPathFactory) -> str:
    commands = tmp_path_factory.mktemp("bin")
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for command in Path(directory).iterdir():
            if command.name.startswith("pg_") or command.name in POSTGRESQL_COMMANDS:
                continue
            if not (commands / command.name).exists() and os.access(command, os.X_OK):
                (commands / command.name).symlink_to(command)
    return str(commands)


def find_server(path: str, **settings: str) -> subprocess.CompletedProcess[str]:
    unset = ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER")
    env = {key: value for key, value in os.environ.items() if key not in unset}
    return subprocess.run(
        ["bash", str(SERVER)],
        env={**env, "PATH": path, **settings},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_postgresql_tools_the_server_leg_uses_the_server_that_exists(
    path_without_postgresql: str, server_url: URL
) -> None:
    user = server_url.username or "postgres"
    where = {"PGHOST": server_url.host or "127.0.0.1", "PGPORT": str(server_url.port or 5432), "PGUSER": user}

    password = {"PGPASSWORD": server_url.password} if server_url.password else {}  # else PGPASSWORD's, if any

    found = find_server(path_without_postgresql, **where, **password)

    assert (found.returncode, found.stderr) == (0, "")
    assert found.stdout == f"postgresql://{user}@{where['PGHOST']}:{where['PGPORT']}/postgres\n"


def test_without_any_server_the_server_leg_is_skipped_saying_why_in_one_line(
    path_without_postgresql: str,
) -> None:
    port = free_port()

    found = find_server(path_without_postgresql, PGPORT=str(port))

    assert (found.returncode, found.stdout) == (3, "")
    [line] = found.stderr.splitlines()
    assert line.startswith(
        f"== tests against a PostgreSQL server: skipped, none accepts postgres at 127.0.0.1:{port} ("
    )
    assert "Connection refused" in line
    assert line.endswith("set DATABASE_URL, or PGHOST and PGPORT, to name one")


def test_database_url_names_the_server_leg_without_being_probed(path_without_postgresql: str) -> None:
    named = "postgresql://ci@db.invalid:6543/school"

    found = find_server(path_without_postgresql, DATABASE_URL=named)

    assert (found.returncode, found.stdout, found.stderr) == (0, f"{named}\n", "")
