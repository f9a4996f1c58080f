"""An ordinary user's checkout: its first run works, the server runs as that user, no one else gets in.

The user runs the quick start's main job with a Python of its own (this Python version, from the
system) and this project's packages linked into a directory it can read: what `uv sync` would
give it, without building a virtualenv in the test.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrations.database import server_user
from tests.helpers.checkouts import (
    EMBEDDED_LEG_ONLY,
    NOT_ROOT,
    ROOT,
    ROSTER,
    Intruder,
    ancestry,
    as_user,
    discard_checkout,
    identity_of,
    link_tree,
    listening_tcp_ports,
    make_checkout,
    os_user,
    postmaster_of,
    site_packages,
    system_python,
)

pytestmark = [EMBEDDED_LEG_ONLY, pytest.mark.skipif(not ROOT, reason=NOT_ROOT)]


@dataclass
class Owner:
    name: str
    checkout: Path
    ancestry_before: list[tuple[str, int, int, int, bytes]]
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def owner(open_directory: Path) -> Iterator[Owner]:
    python = system_python()
    if python is None:
        pytest.skip("no system Python of this version for another user to run")
    packages = open_directory / f"packages-{uuid.uuid4().hex[:6]}"
    link_tree(site_packages(), packages)
    with os_user(f"owner-{uuid.uuid4().hex[:6]}") as name:
        home = open_directory / name
        checkout = make_checkout(home / "clone")
        entry = pwd.getpwnam(name)
        for path in (home, *home.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        home.chmod(0o755)
        before = ancestry(checkout)
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "PYTHONPATH": str(packages),
            "LANG": "C.UTF-8",
        }
        try:
            result = subprocess.run(
                [str(python), "-m", "migrations"],
                cwd=checkout,
                env=environment,
                capture_output=True,
                text=True,
                timeout=180,
                **as_user(name),
            )
            yield Owner(name, checkout, before, result)
        finally:
            discard_checkout(checkout)
            shutil.rmtree(packages, ignore_errors=True)


def test_an_ordinary_users_first_run_prints_the_roster_and_changes_nothing_outside(owner: Owner) -> None:
    assert (owner.result.returncode, owner.result.stdout) == (0, ROSTER), owner.result.stderr
    assert ancestry(owner.checkout) == owner.ancestry_before


def test_an_ordinary_users_server_runs_as_that_user_and_no_os_user_is_made(owner: Owner) -> None:
    entry = pwd.getpwnam(owner.name)

    running = identity_of(postmaster_of(owner.checkout).pid)

    assert running["Uid"][0] == entry.pw_uid
    assert running["Gid"][0] == entry.pw_gid
    with pytest.raises(KeyError):
        pwd.getpwnam(server_user.user_name(owner.checkout))


def test_another_user_cannot_reach_an_ordinary_users_server(owner: Owner, intruder: Intruder) -> None:
    marker = Path("/tmp") / f"intruded-{uuid.uuid4().hex}"
    copy = f"CREATE TEMP TABLE t (line text); COPY t FROM PROGRAM 'id > {marker}'"

    through_socket = intruder.run_sql(str(owner.checkout / ".pgdata"), copy)
    tcp_ports = listening_tcp_ports(postmaster_of(owner.checkout).pid)
    through_tcp = [intruder.run_sql("127.0.0.1", copy, port) for port in tcp_ports]

    assert "Permission denied" in through_socket.stderr
    assert tcp_ports == [], "the embedded server listens on TCP"
    assert through_tcp == []
    assert not marker.exists()
