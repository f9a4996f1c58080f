"""A migration command pointed at a standby refuses in one line and changes nothing; reading commands work."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import URL, create_engine, text
from sqlalchemy.pool import NullPool

from migrations.bookkeeping import SCHEMA_REVISION
from migrations.database.scratch import alembic_config
from migrations.database.url import conninfo
from migrations.runner import Settings, readable_errors
from tests.helpers.forked_cli import Finished, Running, run_alembic, start_alembic, start_module
from tests.helpers.replication import Replicated
from tests.helpers.snapshots import snapshot, versions
from tests.replicas import embedded_postgres_only

REFUSAL = (
    "FAILED: the database server is a read-only standby in recovery (pg_is_in_recovery()), and "
    "migrations run on the primary: point DATABASE_URL at the primary; nothing was changed"
)
# Where the primary is, and the commands that would migrate from there; at head, an upgrade
# with nothing to do, which would otherwise report success, and the main job, which runs one.
MIGRATING_COMMANDS: dict[str, list[tuple[str, ...]]] = {
    SCHEMA_REVISION: [
        ("alembic", "upgrade", "head"),
        ("alembic", "downgrade", "base"),
        ("alembic", "stamp", "head"),
    ],
    "head": [("alembic", "upgrade", "head"), ("migrations",)],
}


def start(command: tuple[str, ...], url: URL, workdir: Path) -> Running:
    program, *args = command
    if program == "alembic":
        return start_alembic(*args, url=url, workdir=workdir)
    return start_module(program, *args, url=url, workdir=workdir)


def assert_refused(result: Finished, command: tuple[str, ...]) -> None:
    assert result.returncode != 0, command
    assert "Traceback" not in result.output
    assert result.message in ([REFUSAL], [REFUSAL.replace("FAILED:", "error:")]), (command, result.output)


@embedded_postgres_only
def test_upgrade_downgrade_stamp_and_a_no_op_upgrade_refuse_on_a_standby_and_change_nothing(
    replicated: Replicated, tmp_path: Path
) -> None:
    for stage, commands in MIGRATING_COMMANDS.items():
        command.upgrade(alembic_config(replicated.primary), stage)
        replicated.cluster.wait_for_replay()
        on_primary, on_standby = snapshot(replicated.primary), snapshot(replicated.standby)

        # All at once: each refuses before it takes the migration lock.
        running = {args: start(args, replicated.standby, tmp_path) for args in commands}
        for args, process in running.items():
            assert_refused(process.finish(), args)

        replicated.cluster.wait_for_replay()
        assert snapshot(replicated.primary) == on_primary
        assert snapshot(replicated.standby) == on_standby


@embedded_postgres_only
def test_current_history_and_check_work_on_a_standby(replicated: Replicated, tmp_path: Path) -> None:
    command.upgrade(alembic_config(replicated.primary), "head")
    replicated.cluster.wait_for_replay()
    (head,) = versions(replicated.primary)

    started = [
        start_alembic(*args, url=replicated.standby, workdir=tmp_path)
        for args in [("current",), ("history", "--indicate-current"), ("check",)]
    ]
    current, history, check = (process.finish() for process in started)

    assert current.returncode == 0, current.output
    assert current.stdout.split() == [head, "(head)"]
    assert history.returncode == 0, history.output
    assert f"{head} (head) (current)" in history.stdout
    assert check.returncode == 0, check.output
    assert "No new upgrade operations detected." in check.output


@embedded_postgres_only
def test_a_write_refused_as_read_only_names_the_standby_and_the_primary(
    replicated: Replicated, tmp_path: Path
) -> None:
    # A server that became a standby after the command checked (a failover), or a primary
    # whose transactions are read-only by default: the write itself fails with SQLSTATE 25006.
    engine = create_engine(replicated.standby, poolclass=NullPool)
    with (
        pytest.raises(CommandError) as refused,
        readable_errors(Settings.from_environment()),
        engine.begin() as standby,
    ):
        standby.execute(text("CREATE TABLE t (id int)"))
    engine.dispose()
    assert str(refused.value) == (
        "the database refused a write, it is read-only (cannot execute CREATE TABLE in a read-only "
        "transaction): the database server is a read-only standby in recovery (pg_is_in_recovery()), "
        "and migrations run on the primary: point DATABASE_URL at the primary (or, on the primary, "
        "turn default_transaction_read_only off); nothing was committed for it"
    )

    with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
        primary.execute(f'ALTER DATABASE "{replicated.name}" SET default_transaction_read_only = on')
    before = snapshot(replicated.primary)
    result = run_alembic("upgrade", "head", url=replicated.primary, workdir=tmp_path)
    assert result.returncode != 0
    assert len(result.message) == 1, result.output
    assert result.message[0].startswith("FAILED: the database refused a write, it is read-only (")
    assert "point DATABASE_URL at the primary" in result.message[0]
    assert snapshot(replicated.primary) == before
