"""Who runs the embedded server, and how that user reaches the checkout without opening it to anyone.

- Not root: the caller runs it; no user is created, nothing is changed.
- Root (PostgreSQL refuses to run as root): the checkout's owner runs it when that is not root;
  otherwise an OS user made for this checkout alone, ``pgemb-<hash of its path>``, with a group
  of its own, no login shell and no home. It runs with that group only: never group 0, never a
  user another checkout shares.
- That user may be unable to reach the checkout, e.g. a clone inside a 0700 directory. Then each
  server command runs in a private mount namespace where the blocking directory is covered by a
  small tmpfs that holds only the way down to ``.pgdata/`` and to the wheel's binaries, each bound
  back at its own path: the paths are the same, nothing changes on disk, nothing is opened to any
  other user, and the view ends with the server. This needs CAP_SYS_ADMIN; without it (root in
  an unprivileged container) the error says how to give that one user access instead.
"""

from __future__ import annotations

import ctypes
import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrations.database.messages import EmbeddedServerError

PREFIX = "pgemb-"
# Server commands see nothing of the caller's environment: not a LANG naming a locale the machine
# lacks, not PGDATA or PGPORT. C always exists; the cluster's own locale is set at initdb.
ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 2, 4, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServerUser:
    name: str
    uid: int
    gid: int
    # (directory the user cannot pass, paths below it bound back) for the private mount namespace
    views: tuple[tuple[str, tuple[str, ...]], ...] = ()
    blocked: tuple[str, ...] = ()  # every directory on the way it cannot pass

    def run(
        self, args: Sequence[str | Path], *, dies_with_caller: bool = False, **options: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a server command as this user, with a clean environment and a private umask.

        `dies_with_caller`: killed if this process dies (an initdb must not outlive its caller).
        """
        as_root = os.geteuid() == 0
        enter = entering(self if as_root else None, dies_with_caller)
        try:
            return subprocess.run(
                [str(arg) for arg in args],
                env=ENVIRONMENT,
                umask=0o077,
                preexec_fn=enter,
                text=True,
                check=False,
                **options,
            )
        except subprocess.SubprocessError as error:  # the namespace or the identity change failed
            raise EmbeddedServerError(self.cannot_run(str(error))) from None

    def cannot_run(self, why: str) -> str:
        if not self.views:
            return f"cannot run the embedded PostgreSQL's commands as {self.name}: {why}"
        return (
            f"the embedded PostgreSQL's user {self.name} cannot enter {self.views[0][0]}, and this process "
            "may not give it a private view (a mount namespace needs CAP_SYS_ADMIN): move the checkout "
            f"where that user can reach it, or let exactly that user through: "
            f"setfacl -m u:{self.name}:x {' '.join(self.blocked)}"
        )

    def reaching(self, paths: Sequence[Path]) -> ServerUser:
        """This user, with a private view of each path it could not reach otherwise."""
        if os.geteuid() != 0:
            return self
        blocked = unreachable_ancestors(self.uid, self.gid, paths)
        highest: dict[str, list[str]] = {}  # a tmpfs over the highest covers all below it
        for path, directories in blocked.items():
            highest.setdefault(directories[0], []).append(path)
        views = tuple((directory, tuple(kept)) for directory, kept in highest.items())
        closed = {d for directories in blocked.values() for d in directories if self.closed_to_me(Path(d))}
        return ServerUser(self.name, self.uid, self.gid, views, tuple(sorted(closed)))

    def closed_to_me(self, directory: Path) -> bool:
        """Whether `directory`'s own mode denies this user passage (not merely a directory above it)."""
        found = directory.stat()
        if found.st_uid == self.uid:
            return not found.st_mode & 0o100
        if found.st_gid == self.gid:
            return not found.st_mode & 0o010
        return not found.st_mode & 0o001


def for_checkout(checkout: Path, data_home: Path) -> ServerUser:
    """The user the server of `checkout` runs as (see the module's docstring)."""
    if os.geteuid() != 0:
        me = account(os.geteuid())
        owner = data_home.stat().st_uid if data_home.exists() else me.pw_uid
        if owner != me.pw_uid:
            raise EmbeddedServerError(
                f"{data_home} belongs to {account(owner).pw_name}: run this as that user, "
                "or as root, or move it away to start afresh"
            )
        return ServerUser(me.pw_name, me.pw_uid, os.getegid())
    owner_uid = checkout.stat().st_uid
    user = account(owner_uid) if owner_uid != 0 else ensure_os_user(user_name(checkout), checkout)
    if user.pw_gid == 0:
        raise EmbeddedServerError(
            f"{user.pw_name}'s primary group is root: the embedded PostgreSQL never runs with group 0; "
            "give that user a group of its own"
        )
    return ServerUser(user.pw_name, user.pw_uid, user.pw_gid)


def account(uid: int) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        raise EmbeddedServerError(
            f"uid {uid} has no user name: PostgreSQL needs one (initdb, peer authentication)"
        ) from None


def user_name(checkout: Path) -> str:
    """The OS user made for `checkout` when root runs it: one per checkout path."""
    return PREFIX + hashlib.sha256(str(checkout).encode()).hexdigest()[:10]


def ensure_os_user(name: str, checkout: Path) -> pwd.struct_passwd:
    """`name`, created if missing: a system user with a group of its own, no home, no login."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    group = ["--gid", name] if group_exists(name) else ["--user-group"]
    shell = shutil.which("nologin", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/bin/false"
    comment = f"embedded PostgreSQL of {checkout}".replace(":", "_").replace("\n", "_")
    command = ["useradd", "--system", *group, "--no-create-home", "--home-dir", "/nonexistent"]
    command += ["--shell", shell, "--comment", comment, name]
    why = "useradd failed"
    for _ in range(40):  # another useradd (another checkout's first run) may hold /etc/passwd's lock
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            why = str(error)
            break
        try:
            return pwd.getpwnam(name)
        except KeyError:
            why = (done.stderr.strip().splitlines() or [why])[-1]
        time.sleep(0.25)
    raise EmbeddedServerError(f"cannot create the OS user {name} for the embedded PostgreSQL: {why}")


def remove_os_user(checkout: Path) -> str | None:
    """Remove the user made for `checkout`, and its group; its name, or None if there was none."""
    name = user_name(checkout)
    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    for command in (["userdel", name], ["groupdel", name]):
        if command[0] == "groupdel" and not group_exists(name):
            break
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["failed"])[-1]
            raise EmbeddedServerError(f"cannot remove the OS user {name}: {why}")
    return name


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def unreachable_ancestors(uid: int, gid: int, paths: Sequence[Path]) -> dict[str, list[str]]:
    """For each path uid:gid cannot reach: the directories on its way it cannot pass, top down.

    Asked of the kernel itself (access(2), as PostgreSQL checks its binaries), in a child that
    takes on exactly the server's identity: ACLs and group bits count as they will for it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            found = [
                f"{path}\0{ancestor}"
                for path in paths
                for ancestor in reversed(path.parents)
                if not os.access(ancestor, os.X_OK)
            ]
            os.write(write_end, "\n".join(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        lines = answer.read().decode()
    os.waitpid(pid, 0)
    blocked: dict[str, list[str]] = {}
    for line in lines.splitlines():
        path, ancestor = line.split("\0")
        blocked.setdefault(path, []).append(ancestor)
    return blocked


def entering(user: ServerUser | None, dies_with_caller: bool) -> Callable[[], None] | None:
    """What the child does before it execs: its private view, the server's identity, its fate."""
    if user is None and not dies_with_caller:
        return None

    def enter() -> None:  # pragma: no cover - runs in the child
        if user is not None:
            if user.views:
                enter_view(user.views)
            os.setgroups([])
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
        if dies_with_caller and hasattr(_libc, "prctl"):  # Linux
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return enter


def enter_view(views: tuple[tuple[str, tuple[str, ...]], ...]) -> None:  # pragma: no cover - child
    """A mount namespace of our own: each blocked directory covered, the kept paths bound back."""
    checked(_libc.unshare(CLONE_NEWNS), "unshare")
    checked(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    held = []
    for _, kept in views:  # a handle on each kept tree, taken before its directory is covered
        for path in kept:
            checked(_libc.mount(path.encode(), path.encode(), None, MS_BIND | MS_REC, None), "bind")
            held.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
    os.umask(0o022)
    for directory, _ in views:
        options = b"mode=0711,size=64k"
        checked(_libc.mount(b"tmpfs", directory.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), "tmpfs")
    for path, handle in held:
        Path(path).mkdir(mode=0o711, parents=True, exist_ok=True)
        source = f"/proc/self/fd/{handle}".encode()
        checked(_libc.mount(source, path.encode(), None, MS_BIND | MS_REC, None), "bind back")
        os.close(handle)


def checked(result: int, what: str) -> None:  # pragma: no cover - child
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
