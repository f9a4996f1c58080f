"""Throwaway PostgreSQL servers the tests start on free ports, and always stop."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

from migrations.database.embedded import embedded_tools, free_port


@contextmanager
def password_checking_server(password: str) -> Iterator[URL]:
    """A PostgreSQL that checks passwords (scram-sha-256), as a real deployment's does; the test
    servers trust everyone. Its user postgres has `password`; the URL carries it."""
    root = Path(tempfile.mkdtemp(prefix="scram-"))  # under /tmp, which the server's user can reach
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
