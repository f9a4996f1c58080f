"""Throwaway PostgreSQL servers the tests start on free ports, and always stop."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL

from migrations.database import processes, server_user
from migrations.database.embedded import binaries, binary_directories

# Each character a URL treats specially, between fragments the tests look for in every output.
SERVER_PASSWORD = "Pa55@w0rd/Qx7:Zk9%?#"


@contextmanager
def password_checking_server(password: str = SERVER_PASSWORD) -> Iterator[URL]:
    """A PostgreSQL on TCP that checks passwords (scram-sha-256), as a real deployment's does; the
    test servers trust everyone. Its user postgres has `password`; the URL carries it.

    It runs as the embedded server runs: as the caller, or as root as an OS user made for its
    directory, removed at the end.
    """
    root = Path(tempfile.mkdtemp(prefix="scram-")).resolve()
    home = root / "pg"
    user = server_user.for_checkout(root, home)
    try:
        home.mkdir(mode=0o700)
        (home / "pwfile").write_text(password)
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
        yield URL.create("postgresql", "postgres", password, "127.0.0.1", port, "postgres")
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
