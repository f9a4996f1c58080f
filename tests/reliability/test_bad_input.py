"""Bad input gets one line saying what is wrong, a non-zero exit, no traceback, no password, no change."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database.url import conninfo
from tests.helpers.forked_cli import Finished, run_alembic, start_module
from tests.helpers.snapshots import snapshot, versions
from tests.helpers.types import MakeDatabase

# In every URL here, so that the tests see it is never printed. A server that checks passwords
# (GitHub's service container, docker compose's db) gets its own instead: see with_password.
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


def with_password(url: URL) -> URL:
    """`url` with a password: the server's own where it has one (in the URL or PGPASSWORD), else PASSWORD."""
    return url.set(password=url.password or os.environ.get("PGPASSWORD") or PASSWORD)


def assert_refused(result: Finished, expected: str, *passwords: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.output
    for password in passwords or (PASSWORD,):
        assert password not in result.output
    assert len(result.message) == 1, result.output
    assert result.message[0].startswith(("FAILED: ", "error: "))
    assert expected in result.message[0]


def missing_database(server_url: URL) -> URL:
    return with_password(server_url.set(database=f"missing_{uuid.uuid4().hex[:12]}"))


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
    server_password = with_password(request.getfixturevalue("server_url")).password

    result = run(COMMANDS[command], database_url(request), tmp_path)

    assert_refused(result, expected, *filter(None, (PASSWORD, server_password)))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_database_is_not_created(command: str, server_url: URL, tmp_path: Path) -> None:
    url = missing_database(server_url)

    run(COMMANDS[command], url.render_as_string(hide_password=False), tmp_path)

    with psycopg.connect(conninfo(server_url)) as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone() is None
        )


# Each -x that would otherwise be ignored, letting a downgrade that means to keep data drop it.
X_REFUSED = {
    ("allow_data_loss=yes",): "-x allow_data_loss='yes' is neither true nor false",
    ("allow_data_loss=TRUE",): "-x allow_data_loss='TRUE' is neither true nor false",
    ("allow_dataloss=false",): "-x allow_dataloss=... is not an option of this project",
    ("allow_data_loss=false", "allow_data_loss=true"): "-x allow_data_loss is given twice",
    (f"url=postgresql://postgres:{PASSWORD}@127.0.0.1/elsewhere",): "-x url=... names the database of an "
    "offline (--sql) script only",
}


def with_x(*x_arguments: str, then: tuple[str, ...] = ("downgrade", "base")) -> tuple[str, ...]:
    """`alembic -x a -x b ... downgrade base`, or `then` instead of `downgrade base`."""
    options = [part for argument in x_arguments for part in ("-x", argument)]
    return ("alembic", "-c", str(ALEMBIC_INI), *options, *then)


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
        *(
            (
                "head_url",
                with_x(),
                {"MIGRATION_LOCK_WAIT": wait},
                f"MIGRATION_LOCK_WAIT={wait!r} is not a number of seconds (0 or more)",
            )
            for wait in ("nan", "-1", "inf")
        ),
        *(("head_url", with_x(*x_arguments), {}, expected) for x_arguments, expected in X_REFUSED.items()),
        (
            "head_url",
            with_x("allow_dataloss=true", then=("upgrade", "head", "--sql")),
            {},
            "-x allow_dataloss=... is not an option of this project",
        ),
    ],
    ids=[
        "alembic_version unknown: alembic upgrade head",
        "alembic_version unknown: python -m migrations",
        "downgrade to an unknown revision",
        "MIGRATION_LOCK_TIMEOUT not a duration",
        "MIGRATION_LOCK_WAIT nan",
        "MIGRATION_LOCK_WAIT negative",
        "MIGRATION_LOCK_WAIT infinite",
        "-x allow_data_loss neither true nor false",
        "-x allow_data_loss in upper case",
        "-x key unknown",
        "-x given twice",
        "-x url online",
        "-x key unknown offline",
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
    url = with_password(request.getfixturevalue(start))
    before = snapshot(url)

    result = run(command, url.render_as_string(hide_password=False), tmp_path, setting)

    assert url.password
    assert_refused(result, expected, url.password)
    assert snapshot(url) == before


def test_stamp_on_a_database_without_tables_warns_that_it_created_none(
    make_database: MakeDatabase, head_url: URL, tmp_path: Path
) -> None:
    head = ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_current_head()
    empty = make_database()
    assert run_alembic("stamp", "base", url=head_url, workdir=tmp_path).returncode == 0

    on_empty = run_alembic("stamp", "head", url=empty, workdir=tmp_path)
    on_tables = run_alembic("stamp", "head", url=head_url, workdir=tmp_path)

    assert on_empty.returncode == 0, on_empty.output
    assert on_empty.message == [
        f"WARNING [alembic.env] stamp records {head} as applied without running any migration, and this "
        "database has no tables: it still has none. To build the schema instead: alembic stamp base, "
        "then alembic upgrade head"
    ]
    assert versions(empty) == [head]
    # Stamping a database that has the tables (adopting an existing schema) is what stamp is for.
    assert (on_tables.returncode, on_tables.message) == (0, [])
