"""Bad input gets one line saying what is wrong, a non-zero exit, no traceback, no password, no change."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.database import processes, server_user
from migrations.database.embedded import binaries, binary_directories
from migrations.database.url import conninfo
from tests.helpers.forked_cli import Finished, start_module
from tests.helpers.snapshots import snapshot

PASSWORD = "s3cr3t-pw-XYZ"
# The password server's own: each character URLs treat specially, between fragments to look for.
SERVER_PASSWORD = "Pa55@w0rd/Qx7:Zk9"
SECRETS = (PASSWORD, "Pa55", "w0rd", "Qx7", "Zk9")
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
    assert not [secret for secret in SECRETS if secret in result.output]
    assert len(result.message) == 1, result.output
    assert result.message[0].startswith(("FAILED: ", "error: "))
    assert expected in result.message[0]


@pytest.fixture(scope="module")
def password_server() -> Iterator[URL]:
    """A throwaway PostgreSQL on TCP whose password holds @, / and : (the test servers trust everyone).

    It runs as the embedded server runs: as the caller, or as root as an OS user made for its
    directory, removed at the end.
    """
    root = Path(tempfile.mkdtemp(prefix="scram-")).resolve()
    home = root / "pg"
    user = server_user.for_checkout(root, home)
    try:
        home.mkdir(mode=0o700)
        (home / "pwfile").write_text(SERVER_PASSWORD)
        if os.geteuid() == 0:
            for path in (root, home, home / "pwfile"):
                os.chown(path, user.uid, user.gid)
        user = user.reaching([home, *binary_directories()])
        data, log = str(home / "data"), str(home / "log")
        initdb = [str(binaries() / "initdb"), "-D", data, "--auth=scram-sha-256", "-E", "UTF8"]
        done = user.run(
            [*initdb, "-U", "postgres", f"--pwfile={home / 'pwfile'}", "--no-sync"], capture_output=True
        )
        assert done.returncode == 0, done.stderr
        port = free_port()
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
        pg_ctl = [str(binaries() / "pg_ctl"), "-D", data, "-l", log, "-w", "-o", options, "start"]
        done = user.run(pg_ctl, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        assert done.returncode == 0, Path(log).read_text()
        yield URL.create("postgresql", "postgres", SERVER_PASSWORD, "127.0.0.1", port, "postgres")
    finally:
        postmaster = processes.postmaster_of(home / "data")
        if postmaster is not None:
            processes.stop(postmaster)
        shutil.rmtree(root)
        if os.geteuid() == 0:
            server_user.remove_os_user(root)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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


# Passwords holding @, / and :, given every way a URL can carry them, to every command that reads
# DATABASE_URL: the server refuses WRONG and lets SERVER_PASSWORD in; neither may ever be printed.
WRONG = "Zk9@Qx7/w0rd:Pa55"
PASSWORD_FORMS: dict[str, Callable[[URL, str], str]] = {
    "percent-encoded": lambda server, password: server.set(password=password).render_as_string(False),
    "in the query": lambda server, password: (
        server.render_as_string(False) + "?password=" + quote(password, safe="")
    ),
    "as it is": lambda server, password: server.render_as_string(False).replace(
        "postgres@", f"postgres:{password}@", 1
    ),
}
AUTH_FAILED = 'password authentication failed for user "postgres"'
AT_REFUSED = "write an @ in a user name or password as %40"
URL_COMMAND = ("migrations.database", "url")
CURRENT = ("alembic", "-c", str(ALEMBIC_INI), "current")
CASES: dict[str, tuple[str, str, tuple[str, ...], str | None]] = {
    **{
        f"{what}: {name}": (form, password, command, expected)
        for name, command in COMMANDS.items()
        for what, form, password, expected in [
            ("wrong, percent-encoded", "percent-encoded", WRONG, AUTH_FAILED),
            ("wrong, in the query", "in the query", WRONG, AUTH_FAILED),
            ("wrong, / and : as they are", "as it is", "Zk9/Qx7:w0rd", AUTH_FAILED),
            ("wrong, @ as it is", "as it is", WRONG, AT_REFUSED),
        ]
    },
    "right, percent-encoded: alembic current": ("percent-encoded", SERVER_PASSWORD, CURRENT, None),
    "right, in the query: alembic current": ("in the query", SERVER_PASSWORD, CURRENT, None),
    "percent-encoded: url": ("percent-encoded", WRONG, URL_COMMAND, None),
    "in the query: url": ("in the query", WRONG, URL_COMMAND, None),
    "@ as it is: url": ("as it is", WRONG, URL_COMMAND, AT_REFUSED),
}


@pytest.fixture(scope="module")
def password_results(password_server: URL, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Every case of CASES, run at once."""
    workdir = tmp_path_factory.mktemp("passwords")
    server = URL.create(
        "postgresql", "postgres", None, password_server.host, password_server.port, "postgres"
    )
    started = {}
    for case, (form, password, command, _) in CASES.items():
        module, *args = command
        environment = {"DATABASE_URL": PASSWORD_FORMS[form](server, password)}
        started[case] = start_module(
            module, *args, url=URL.create("postgresql"), workdir=workdir, env=environment
        )
    return {case: process.finish() for case, process in started.items()}


@pytest.mark.parametrize("case", CASES)
def test_a_password_with_at_slash_and_colon_works_or_is_refused_and_is_never_shown(
    case: str, password_results: dict[str, Finished]
) -> None:
    expected = CASES[case][3]
    result = password_results[case]

    if expected is not None:
        assert_refused(result, expected)
    else:
        assert result.returncode == 0, result.output
        assert not [secret for secret in SECRETS if secret in result.output], result.output


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word: a hung server, or another service."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port: int = listener.getsockname()[1]
        yield port


def test_a_server_that_accepts_and_never_answers_gets_one_line_after_the_connect_timeout(
    tmp_path: Path,
) -> None:
    commands = {**COMMANDS, "python -m bench": ("bench", "--quick")}
    with silent_listener() as port:
        silent = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/db"
        urls = {"default": silent, "connect_timeout=2 in the URL": f"{silent}?connect_timeout=2"}
        running, began = {}, {}
        for name, command in commands.items():
            for timeout, url in urls.items():
                environment = {"DATABASE_URL": url}
                running[name, timeout] = start_module(
                    *command, url=URL.create("postgresql"), workdir=tmp_path, env=environment
                )
                began[name, timeout] = time.monotonic()
        took: dict[tuple[str, str], float] = {}
        while len(took) < len(running) and time.monotonic() - min(began.values()) < 60:
            for case, process in running.items():
                if case not in took and not process.process.is_alive():
                    took[case] = time.monotonic() - began[case]
            time.sleep(0.05)
        results = {case: process.finish(timeout=5) for case, process in running.items()}

    for (name, timeout), result in results.items():
        assert_refused(result, "connection timeout expired")
        if timeout == "default":
            assert 9.5 < took[name, timeout] < 30, took
        else:
            assert took[name, timeout] < 8, took
