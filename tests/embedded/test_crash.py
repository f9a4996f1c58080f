"""A first run killed with SIGKILL at any moment leaves a state the next run recovers from on its own."""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.checkouts import (
    EMBEDDED_LEG_ONLY,
    ROSTER,
    data_of,
    discard_checkout,
    make_checkout,
    processes_mentioning,
    run_in,
)
from tests.helpers.forked_cli import start_in_checkout

pytestmark = EMBEDDED_LEG_ONLY


def writing_cluster(checkout: Path) -> bool:
    """An initdb of this checkout runs, and has begun writing the cluster."""
    initdb = [pid for pid in processes_mentioning(str(checkout / ".pgdata")) if is_initdb(pid)]
    return bool(initdb) and any(path.name == "base" for path in (checkout / ".pgdata").glob("**/base"))


def is_initdb(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"initdb")
    except OSError:
        return False


def killed_when(checkout: Path, moment: Callable[[], bool]) -> None:
    """Start a first run in `checkout`, and SIGKILL it the moment `moment()` holds."""
    with tempfile.TemporaryDirectory() as outputs:
        running = start_in_checkout(checkout, "migrations", workdir=Path(outputs))
        deadline = time.monotonic() + 120
        while not moment():
            assert running.process.is_alive(), f"finished before the moment: {running.finish().output}"
            assert time.monotonic() < deadline, "the moment never came"
            time.sleep(0.001)
        running.process.kill()
        assert running.finish().returncode == -signal.SIGKILL


def test_a_first_run_killed_during_initdb_or_right_after_it_is_recovered_by_the_next_run(
    short_tmp_path: Path,
) -> None:
    checkout = make_checkout(short_tmp_path / "clone")
    staging = checkout / ".pgdata"
    try:
        # while initdb writes the cluster (its base/ directory is there, not yet complete)
        killed_when(checkout, lambda: writing_cluster(checkout))
        assert not data_of(checkout).exists()
        deadline = time.monotonic() + 10
        while processes_mentioning("data.init-") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_mentioning("data.init-") == [], "initdb outlived the command that ran it"

        # as soon as the complete cluster is in place: recording its identity, starting the server
        killed_when(checkout, data_of(checkout).exists)

        result = run_in(checkout, "migrations")

        assert (result.returncode, result.stdout) == (0, ROSTER), result.output
        assert list(staging.glob("data.init-*")) == []
    finally:
        discard_checkout(checkout)
