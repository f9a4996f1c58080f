"""Bad input gets one line saying what is wrong, a non-zero exit, no traceback, no password, no change."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database.embedded import embedded_tools, free_port
from migrations.database.url import conninfo
from tests.helpers.forked_cli import Finished, start_module
from tests.helpers.snapshots import snapshot

PASSWORD = "s3cr3t-pw-XYZ"
UNKNOWN_REVISION = "0badc0ffee00"
COMMANDS = {
    "alembic upgrade head": ("alembic", "-c", str(ALEMBIC_INI), "upgrade", "head"),
    "python -m migrations": ("migrations",),
}


def run(
    command: tuple[str, ...], database_url: str, workdir: Path, extra: dict[str, str] | None = None
) -> Finished:
    # Any URL would do for the rest of the environment: DATABASE_URL replaces it.
    placeholder = URL.create("postgresql")
    module, *args = command
    return start_module(
        module, *args, url=placeholder, workdir=workdir, env={**(extra or {}), "DATABASE_URL": database_url}
    ).finish()


def assert_refused(result: Finished, expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output
    assert len(result.message) == 1, result.output
    assert result.message[0].startswith(("FAILED: ", "error: "))
    assert expected in result.message[0]


@pytest.fixture(scope="module")
def password_server() -> Iterator[URL]:
    """A throwaway PostgreSQL that checks passwords (scram-sha-256); the test servers trust everyone."""
    root = Path(tempfile.mkdtemp(prefix="scram-"))  # under /tmp, which the server's user can reach
    password = uuid.uuid4().hex
    (root / "pwfile").write_text(password)
    port = free_port()
    with embedded_tools() as tools:
        user = tools.server_user()
        if user is not None:
            for path in (root, root / "pwfile"):
                shutil.chown(path, user, user)
        settings = {"port": port, "listen_addresses": "127.0.0.1", "unix_socket_directories": ""}
        options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        tools.initdb(
            [
                "--auth=scram-sha-256",
                "--username=postgres",
                f"--pwfile={root / 'pwfile'}",
                "--no-sync",
                *options,
            ],
            pgdata=root / "data",
            user=user,
        )
        tools.pg_ctl(["-w", "-l", str(root / "log"), "start"], pgdata=root / "data", user=user)
        try:
            yield URL.create("postgresql", "postgres", password, "127.0.0.1", port, "postgres")
        finally:
            tools.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=root / "data", user=user)
            shutil.rmtree(root)


def missing_database(server_url: URL) -> URL:
    return server_url.set(database=f"missing_{uuid.uuid4().hex[:12]}", password=PASSWORD)


URLS: dict[str, tuple[Callable[[pytest.FixtureRequest], str], str]] = {
    "empty": (lambda _: "", "DATABASE_URL is empty"),
    "malformed": (lambda _: f"postgresql://postgres:{PASSWORD}@127.0.0.1:port/db", "is not a valid URL"),
    "sqlite": (lambda _: f"sqlite://user:{PASSWORD}@/student_course.db", "requires PostgreSQL"),
    "mysql": (lambda _: f"mysql://root:{PASSWORD}@127.0.0.1:3306/db", "requires PostgreSQL"),
    "unreachable": (lambda _: f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/db", "Connection refused"),
    "missing database": (
        lambda request: missing_database(request.getfixturevalue("server_url")).render_as_string(False),
        "does not exist",
    ),
    "wrong password": (
        lambda request: (
            request.getfixturevalue("password_server")
            .set(password=PASSWORD)
            .render_as_string(hide_password=False)
        ),
        'password authentication failed for user "postgres"',
    ),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", URLS)
def test_a_bad_database_url_gets_one_line_and_a_failing_exit(
    case: str, command: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    database_url, expected = URLS[case]

    assert_refused(run(COMMANDS[command], database_url(request), tmp_path), expected)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_database_is_not_created(command: str, server_url: URL, tmp_path: Path) -> None:
    url = missing_database(server_url)

    run(COMMANDS[command], url.render_as_string(hide_password=False), tmp_path)

    with psycopg.connect(conninfo(server_url)) as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone() is None
        )


@pytest.fixture
def foreign_version_url(head_url: URL) -> URL:
    """A database whose alembic_version names a revision this history does not have."""
    with psycopg.connect(conninfo(head_url)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (UNKNOWN_REVISION,))
    return head_url


@pytest.mark.parametrize(
    ("start", "command", "setting", "expected"),
    [
        ("foreign_version_url", COMMANDS["alembic upgrade head"], {}, "Can't locate revision"),
        ("foreign_version_url", COMMANDS["python -m migrations"], {}, "Can't locate revision"),
        (
            "head_url",
            ("alembic", "-c", str(ALEMBIC_INI), "downgrade", UNKNOWN_REVISION),
            {},
            f"Can't locate revision identified by '{UNKNOWN_REVISION}'",
        ),
        (
            "head_url",
            COMMANDS["alembic upgrade head"],
            {"MIGRATION_LOCK_TIMEOUT": "soon"},
            "MIGRATION_LOCK_TIMEOUT='soon' is not a duration",
        ),
    ],
    ids=[
        "alembic_version unknown: alembic upgrade head",
        "alembic_version unknown: python -m migrations",
        "downgrade to an unknown revision",
        "MIGRATION_LOCK_TIMEOUT not a duration",
    ],
)
def test_a_revision_or_setting_this_project_does_not_know_gets_one_line_and_changes_nothing(
    start: str,
    command: tuple[str, ...],
    setting: dict[str, str],
    expected: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    url: URL = request.getfixturevalue(start).set(password=PASSWORD)
    before = snapshot(url)

    assert_refused(run(command, url.render_as_string(hide_password=False), tmp_path, setting), expected)
    assert snapshot(url) == before
