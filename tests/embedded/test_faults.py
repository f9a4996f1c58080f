"""Every fault of the embedded server gives one line and a failing exit, or is recovered from on its own.

Checkout B of conftest's pair serves the module (A is the other checkout); each test leaves it
with its server able to start.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrations.database import processes
from migrations.database.embedded import binary_directories
from tests.helpers.checkouts import (
    EMBEDDED_LEG_ONLY,
    ROOT,
    ROSTER,
    ancestry,
    data_of,
    discard_checkout,
    make_checkout,
    postmaster_of,
    run_in,
    shared_memory_left,
    shared_memory_mapped_by,
)
from tests.helpers.forked_cli import Finished

pytestmark = EMBEDDED_LEG_ONLY


@pytest.fixture
def checkout(pair: tuple[Path, Path]) -> Path:
    """Checkout B of conftest's pair (A serves as another checkout)."""
    return pair[1]


@pytest.fixture
def stopped(checkout: Path) -> Iterator[Path]:
    """The checkout with its server stopped; restored (started again) afterwards."""
    assert run_in(checkout, "migrations.database", "stop").returncode == 0
    files = {path: path.read_bytes() for path in data_of(checkout).glob("postgresql*.conf")}
    yield checkout
    for path, content in files.items():
        path.write_bytes(content)
    restarted = run_in(checkout, "migrations.database", "url")
    assert restarted.returncode == 0, restarted.output


def assert_one_line(result: Finished, *expected: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.output
    assert len(result.message) == 1, result.output
    assert result.message[0].startswith("error: ")
    for text in expected:
        assert text in result.message[0], result.message[0]


def test_a_crashed_server_whose_pid_file_is_stale_simply_starts_again(checkout: Path) -> None:
    assert run_in(checkout, "migrations.database", "url").returncode == 0
    crashed = postmaster_of(checkout)
    segments = shared_memory_mapped_by(crashed.pid)
    os.kill(crashed.pid, signal.SIGKILL)

    result = run_in(checkout, "migrations")

    assert (result.returncode, result.stdout) == (0, ROSTER), result.output
    assert postmaster_of(checkout).pid != crashed.pid
    assert segments
    assert shared_memory_left(segments) == set(), "the crashed server's shared memory was left"


def test_stop_finds_and_stops_the_server_without_its_pid_file(checkout: Path) -> None:
    assert run_in(checkout, "migrations.database", "url").returncode == 0
    running = postmaster_of(checkout)
    segments = shared_memory_mapped_by(running.pid)
    (data_of(checkout) / "postmaster.pid").unlink()

    result = run_in(checkout, "migrations.database", "stop")

    assert result.returncode == 0, result.output
    assert result.stdout.startswith("stopped the embedded PostgreSQL")
    assert not processes.alive(running.pid)
    assert segments
    assert shared_memory_left(segments) == set()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    "where", ["postgresql.conf and postgresql.auto.conf", "postgresql.conf, a port that never answers"]
)
def test_a_port_set_in_the_configuration_never_misleads_the_commands(
    where: str, stopped: Path, silent_port: int
) -> None:
    conf, auto = data_of(stopped) / "postgresql.conf", data_of(stopped) / "postgresql.auto.conf"
    lines = [line for line in conf.read_text().splitlines() if not line.startswith("port")]
    if where.endswith("never answers"):
        conf.write_text("\n".join([*lines, f"port = {silent_port}", ""]))
    else:
        conf.write_text("\n".join([*lines, "port = 6001", "port = 6002", ""]))
        auto.write_text(auto.read_text() + "port = '6003'\n")

    result = run_in(stopped, "migrations")

    assert (result.returncode, result.stdout) == (0, ROSTER), result.output


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("port = abc", 'invalid value for parameter "port": "abc"'),
        ("shared_buffers = '8000GB'", "could not map anonymous shared memory"),
    ],
    ids=["a garbage port", "a server that cannot start"],
)
def test_a_bad_setting_or_a_failed_start_gives_one_line_that_points_to_the_log(
    setting: str, expected: str, stopped: Path
) -> None:
    with (data_of(stopped) / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"{setting}\n")

    result = run_in(stopped, "migrations")

    assert_one_line(result, "the embedded PostgreSQL did not start", expected, "server.log")


DAMAGES = {
    "a truncated pg_control": ("global/pg_control", b"", "is damaged (global/pg_control is truncated)"),
    "another major version's data": ("PG_VERSION", b"15\n", "database files are incompatible with server"),
    "another checkout's cluster": (None, None, "holds another cluster than the one initialized here"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_or_foreign_pgdata_gives_one_line_and_is_left_as_it_is(
    damage: str, stopped: Path, pair: tuple[Path, Path]
) -> None:
    file, content, expected = DAMAGES[damage]
    data = data_of(stopped)
    saved = data.with_name("saved")
    if file is None:  # the whole cluster replaced by another checkout's
        data.rename(saved)
        shutil.copytree(data_of(pair[0]), data, ignore=shutil.ignore_patterns("postmaster.pid"))
    else:
        shutil.copy2(data / file, saved)
        (data / file).write_bytes(content or b"")
    damaged = sorted((str(path), path.stat().st_size) for path in data.rglob("*") if path.is_file())
    try:
        result = run_in(stopped, "migrations")

        assert_one_line(result, expected)
        assert sorted((str(p), p.stat().st_size) for p in data.rglob("*") if p.is_file()) == damaged
    finally:
        if file is None:
            shutil.rmtree(data)
            saved.rename(data)
        else:
            saved.replace(data / file)


def test_an_older_layouts_pgdata_gives_one_line(short_tmp_path: Path) -> None:
    old = make_checkout(short_tmp_path / "old")
    (old / ".pgdata").mkdir(mode=0o700)
    (old / ".pgdata" / "PG_VERSION").write_text("18\n")

    result = run_in(old, "migrations")

    assert_one_line(result, "holds a server from an older version of this project")


def test_something_squatting_the_socket_does_not_stop_the_server_starting(stopped: Path) -> None:
    path = stopped / ".pgdata" / ".s.PGSQL.5432"
    with socket.socket(socket.AF_UNIX) as squatter:
        squatter.bind(str(path))
        squatter.listen(1)
        path.with_name(path.name + ".lock").write_text(f"{os.getpid()}\n{data_of(stopped)}\n")

        result = run_in(stopped, "migrations")

    assert (result.returncode, result.stdout) == (0, ROSTER), result.output


def waiting_for_lock(pid: int) -> bool:
    return any(
        line.split()[5] == str(pid) for line in Path("/proc/locks").read_text().splitlines() if "->" in line
    )


@pytest.mark.parametrize(
    "command",
    [("migrations",), ("alembic", "upgrade", "head"), ("migrations.database", "url")],
    ids=["python -m migrations", "alembic upgrade head", "python -m migrations.database url"],
)
def test_ctrl_c_during_a_command_gives_one_line_and_exit_status_130(
    checkout: Path, command: tuple[str, ...]
) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    shell = ["bash", "-c", '"$@"; echo "exit status $?" >&2', "bash", sys.executable, "-m", *command]
    with (checkout / ".pgdata.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the command waits for it: a moment a user may press Ctrl-C
        running = subprocess.Popen(
            shell, cwd=checkout, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        children = Path(f"/proc/{running.pid}/task/{running.pid}/children")
        deadline = time.monotonic() + 60
        while not ((pids := children.read_text().split()) and waiting_for_lock(int(pids[0]))):
            assert running.poll() is None, running.communicate()
            assert time.monotonic() < deadline, "the command never waited for the lock"
            time.sleep(0.05)
        os.kill(int(pids[0]), signal.SIGINT)
        stdout, stderr = running.communicate(timeout=30)

    assert stderr.splitlines()[-2:] == ["error: interrupted (Ctrl-C)", "exit status 130"], stderr
    assert "Traceback" not in stdout + stderr


@pytest.mark.skipif(
    not ROOT or shutil.which("setpriv") is None, reason="needs root, and setpriv to drop a capability"
)
def test_without_cap_sys_admin_a_clone_its_server_user_cannot_enter_gets_one_line_and_nothing_changes(
    short_tmp_path: Path,
) -> None:
    private = short_tmp_path / "private"
    private.mkdir(mode=0o700)
    clone = make_checkout(private / "clone")
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    before = ancestry(clone)
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-m", "migrations"],
            cwd=clone,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        after = ancestry(clone)
        # the setfacl command must let that user through every directory closed to it on its way
        ways = [clone / ".pgdata", *binary_directories()]
        closed = sorted({str(d) for way in ways for d in way.parents if not d.stat().st_mode & 0o001})
    finally:
        discard_checkout(clone)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the embedded PostgreSQL's user pgemb-"), line
    assert line.endswith(f":x {' '.join(closed)}"), line
    assert str(private) in closed
    assert after == before
