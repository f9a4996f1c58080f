"""The replica tests' cluster: a real hot standby streaming from a real primary, and nothing left after it."""

from __future__ import annotations

import multiprocessing
import textwrap
import time
from multiprocessing.connection import Connection
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL

from migrations.database.url import conninfo
from tests.helpers.forked_cli import start_module
from tests.helpers.replication import (
    Cluster,
    Replicated,
    install_id,
    installed_postgres,
    processes_in,
    start_cluster,
    sweep_stale,
)


def test_the_standby_is_a_read_only_hot_standby_streaming_the_primarys_writes(
    cluster: Cluster, replicated: Replicated
) -> None:
    with cluster.primary.connect() as primary:
        streaming = primary.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
    assert streaming == [("standby1", "streaming")]

    with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
        primary.execute("CREATE TABLE written (id int)")
        primary.execute("INSERT INTO written VALUES (1)")
    cluster.wait_for_replay()

    with psycopg.connect(conninfo(replicated.standby), autocommit=True) as standby:
        assert standby.execute("SELECT pg_is_in_recovery(), id FROM written").fetchall() == [(True, 1)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("INSERT INTO written VALUES (2)")


def test_a_failing_and_an_interrupted_test_leave_no_server_and_no_directory_behind(tmp_path: Path) -> None:
    # The fixture itself, in a pytest run of its own: one test fails, the next is interrupted (Ctrl-C).
    record = tmp_path / "directory"
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            def test_fails(cluster):
                Path({str(record)!r}).write_text(str(cluster.directory))
                assert False, "a test that fails"

            def test_is_interrupted(cluster):
                raise KeyboardInterrupt
            """
        )
    )
    (tmp_path / "pytest.ini").touch()  # not the project's: none of its options
    inner = start_module(
        "pytest", str(tmp_path / "test_inner.py"), "-c", str(tmp_path / "pytest.ini"),
        "-p", "tests.replicas.conftest", "-k", install_id(installed_postgres()[0]), "-p", "no:cacheprovider",
        url=URL.create("postgresql"), workdir=tmp_path,
    ).finish()  # fmt: skip

    assert inner.returncode == pytest.ExitCode.INTERRUPTED, inner.output
    assert "1 failed" in inner.stdout
    assert "KeyboardInterrupt" in inner.stdout
    directory = Path(record.read_text())
    assert not directory.exists()
    assert processes_in(directory) == []


def start_cluster_and_wait(report: Connection) -> None:
    cluster = start_cluster(installed_postgres()[0])
    report.send(cluster.directory)
    time.sleep(600)


def test_the_servers_stop_when_the_process_that_started_them_is_killed() -> None:
    receiver, sender = multiprocessing.get_context("fork").Pipe(duplex=False)
    starter = multiprocessing.get_context("fork").Process(target=start_cluster_and_wait, args=(sender,))
    starter.start()
    directory: Path = receiver.recv()
    assert len(processes_in(directory)) > 2  # two postmasters and their processes
    starter.kill()  # SIGKILL: no finally, no atexit; only the kernel's PR_SET_PDEATHSIG acts
    starter.join()

    deadline = time.monotonic() + 30
    while processes_in(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_in(directory) == []
    sweep_stale()  # what the next cluster does first: the dead run's directory goes
    assert not directory.exists()
