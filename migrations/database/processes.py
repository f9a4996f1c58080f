"""The embedded server's processes, found through /proc rather than trusted from its pid file.

PostgreSQL changes its working directory to its data directory, so a process running the
``postgres`` binary whose working directory is ours belongs to our server: this holds with or
without ``postmaster.pid``, after the checkout moved, and across mount namespaces. Processes of
another user are invisible to a non-root caller, which is right: our server runs as the caller.
Without /proc (not Linux), the pid file is all there is to go by.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from migrations.database.messages import EmbeddedServerError

# How long a killed postmaster may stay a zombie before its parent (often PID 1) reaps it.
REAP_WAIT = 10.0
STOP_WAIT = 60.0
PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    uid: int
    is_postmaster: bool  # children rename themselves "postgres: checkpointer" and so on


def servers_in(data: Path) -> list[Process]:
    """Live processes of the postgres binary working in `data`."""
    if not PROC.is_dir():
        pid = recorded_pid(data / "postmaster.pid")
        return [Process(pid, 0, os.geteuid(), True)] if pid is not None and alive(pid) else []
    target = str(data)
    found = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            process = PROC / entry.name
            if str((process / "cwd").readlink()) != target:
                continue
            if Path(str((process / "exe").readlink()).removesuffix(" (deleted)")).name != "postgres":
                continue
            status = (process / "status").read_text()
            command = (process / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, a zombie, or another user's
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields["State"].split()[0] == "Z":
            continue
        found.append(
            Process(
                int(entry.name),
                int(fields["PPid"]),
                int(fields["Uid"].split()[0]),
                not command.startswith(b"postgres:"),
            )
        )
    return found


def postmaster_of(data: Path) -> Process | None:
    """The live postmaster working in `data`, if any."""
    return next((process for process in servers_in(data) if process.is_postmaster), None)


def stop(postmaster: Process) -> None:
    """Fast shutdown (SIGINT): sessions end, transactions roll back; returns once it has exited."""
    try:
        os.kill(postmaster.pid, signal.SIGINT)
    except PermissionError:
        raise EmbeddedServerError(
            f"the embedded PostgreSQL (pid {postmaster.pid}) belongs to another user: stop it as that user"
        ) from None
    except ProcessLookupError:
        return
    if not exited(postmaster.pid, STOP_WAIT):
        raise EmbeddedServerError(
            f"the embedded PostgreSQL (pid {postmaster.pid}) did not stop within {STOP_WAIT:g}s"
        )


def exited(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (exited, not yet reaped)."""
    return state(pid) not in (None, "Z")


def state(pid: int) -> str | None:
    """The process's state letter ("Z" for a zombie), None once it is gone."""
    if not PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def recorded_pid(lock_file: Path) -> int | None:
    try:
        return int(lock_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def clear_stale_lock_files(data: Path, lock_files: list[Path]) -> None:
    """Before a start: make sure no lock file names a process that would stop PostgreSQL starting.

    After a crash (``kill -9``) the postmaster stays a zombie until its parent reaps it, and
    PostgreSQL takes a zombie for a live server. Once it is reaped PostgreSQL recognizes the file
    as stale by itself and frees what the dead server left (its shared memory), so we wait for
    that. A file naming a zombie nobody reaps (a container without an init), or a live process
    that is not our server (a reused pid, a copied checkout), is removed.
    """
    deadline = time.monotonic() + REAP_WAIT
    while (leftovers := servers_in(data)) and time.monotonic() < deadline:
        time.sleep(0.05)  # a crashed postmaster's children notice and exit within moments
    if leftovers:
        pids = ", ".join(str(process.pid) for process in leftovers)
        raise EmbeddedServerError(
            f"processes of a crashed embedded PostgreSQL still run in {data} (pid {pids}): "
            "wait for them to exit, or kill them"
        )
    for lock_file in lock_files:
        pid = recorded_pid(lock_file)
        if pid is None:
            if lock_file.exists():
                lock_file.unlink()  # unreadable: PostgreSQL would refuse to start over it
            continue
        while state(pid) == "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        if state(pid) is not None:
            lock_file.unlink(missing_ok=True)
