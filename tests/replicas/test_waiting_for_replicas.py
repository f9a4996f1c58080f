"""MIGRATION_WAIT_FOR_REPLICAS: after each revision commits, wait for the standbys to replay it (bounded).

Behind the bound: a standby whose replay is paused (``pg_wal_replay_pause()``), as a standby
stalled by a conflict or overloaded would be; and one that is down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from migrations import ALEMBIC_INI
from migrations.catalog import difference
from migrations.database.url import conninfo
from migrations.replicas import ReplicaVisibilityError, ReplicaWait, wait_for_standbys, waiting_for_standbys
from tests.helpers.forked_cli import run_alembic
from tests.helpers.replication import Replicated, Server
from tests.helpers.snapshots import snapshot, versions
from tests.helpers.types import AddStandby, MakeDatabase
from tests.replicas import embedded_postgres_only

HISTORY = ScriptDirectory.from_config(Config(ALEMBIC_INI))
REVISIONS = [script.revision for script in reversed(list(HISTORY.walk_revisions()))]  # base first
CAUGHT_UP = "INFO  [alembic.env] Standbys caught up: "


def revisions_each_followed_by(log: str, prefix: str) -> bool:
    """Whether each revision's "Running upgrade" line is followed by a `prefix` line before the next."""
    segments = log.split("Running upgrade ")[1:]
    return len(segments) == len(REVISIONS) and all(
        any(line.startswith(prefix) for line in segment.splitlines()) for segment in segments
    )


@contextmanager
def replay_paused(standby: Server) -> Iterator[None]:
    with standby.connect() as connection:
        connection.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            connection.execute("SELECT pg_wal_replay_resume()")


def test_each_revision_waits_until_the_standby_replayed_it_and_no_longer(
    replicated: Replicated, tmp_path: Path
) -> None:
    # A generous bound: the waits end when the standby has replayed, in milliseconds.
    result = run_alembic(
        "upgrade", "head", url=replicated.primary, workdir=tmp_path, env={"MIGRATION_WAIT_FOR_REPLICAS": "60"}
    )

    assert result.returncode == 0, result.output
    waits = [line for line in result.stderr.splitlines() if line.startswith(CAUGHT_UP)]
    # Every revision's commit is waited for (a concurrent index build's own commit too).
    assert revisions_each_followed_by(result.stderr, CAUGHT_UP), result.stderr
    assert all(line.startswith(f"{CAUGHT_UP}standby1 replayed ") for line in waits), waits
    # Read at once, without waiting here: the migrator did.
    on_primary = snapshot(replicated.primary)
    assert not difference(on_primary, snapshot(replicated.standby), "primary", "standby")
    assert versions(replicated.standby) == [REVISIONS[-1]]


def test_a_standby_that_does_not_replay_within_the_bound_gets_a_warning_per_revision(
    replicated: Replicated, add_standby: AddStandby, tmp_path: Path
) -> None:
    stalled = add_standby()
    with replay_paused(stalled):
        result = run_alembic(
            "upgrade", "head", url=replicated.primary, workdir=tmp_path,
            env={"MIGRATION_WAIT_FOR_REPLICAS": "0.5"},
        )  # fmt: skip

        assert result.returncode == 0, result.output
        warnings = [line for line in result.message if line.startswith("WARNI")]
        assert revisions_each_followed_by(result.stderr, "WARNI"), result.output
        for warning in warnings:
            assert warning.startswith(
                f"WARNING [alembic.env] {stalled.name} had not replayed the migration's last commit ("
            )
            assert ") after 0.5s (MIGRATION_WAIT_FOR_REPLICAS), so reads there still see the " in warning
            assert f"{stalled.name} (streaming) is " in warning
        assert versions(replicated.primary) == [REVISIONS[-1]]
        assert snapshot(replicated.on(stalled)) == []  # still the empty database

    replicated.cluster.wait_for_replay()  # resumed, it catches up
    assert snapshot(replicated.on(stalled)) == snapshot(replicated.primary)


def test_with_migration_replica_lag_fails_the_migration_stops_after_the_revision_a_standby_did_not_replay(
    replicated: Replicated, add_standby: AddStandby, tmp_path: Path
) -> None:
    stalled = add_standby()
    settings = {"MIGRATION_WAIT_FOR_REPLICAS": "0.5", "MIGRATION_REPLICA_LAG_FAILS": "true"}
    with replay_paused(stalled):
        result = run_alembic("upgrade", "head", url=replicated.primary, workdir=tmp_path, env=settings)

        assert result.returncode != 0
        assert "Traceback" not in result.output
        assert len(result.message) == 1, result.output
        assert result.message[0].startswith(f"FAILED: {stalled.name} had not replayed the migration's last")
        assert result.message[0].endswith(
            "Stopped (MIGRATION_REPLICA_LAG_FAILS=true): the primary keeps the revisions committed so far "
            "(alembic current says which); run the command again once the standbys catch up "
            "(see pg_stat_replication)"
        )
        assert versions(replicated.primary) == REVISIONS[:1]  # the first revision, not one more

    replicated.cluster.wait_for_replay()
    again = run_alembic("upgrade", "head", url=replicated.primary, workdir=tmp_path, env=settings)
    assert again.returncode == 0, again.output
    assert versions(replicated.on(stalled)) == [REVISIONS[-1]]


def test_a_standby_that_is_down_is_not_waited_for_its_slot_is_named_and_it_catches_up_when_back(
    replicated: Replicated, add_standby: AddStandby, tmp_path: Path
) -> None:
    down = add_standby()
    down.stop()
    with psycopg.connect(conninfo(replicated.cluster.primary.url()), autocommit=True) as primary:
        # The primary notices the lost connection within milliseconds; wait for that, not longer.
        deadline = time.monotonic() + 30
        while primary.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (down.name,)
        ).fetchone() != (False,):
            assert time.monotonic() < deadline, "the primary still shows the stopped standby as connected"
            time.sleep(0.01)

    result = run_alembic(
        "upgrade", "head", url=replicated.primary, workdir=tmp_path, env={"MIGRATION_WAIT_FOR_REPLICAS": "60"}
    )

    assert result.returncode == 0, result.output
    assert [line for line in result.message if line.startswith("WARNI")] == [
        f"WARNING [alembic.env] replication slot {down.name} has no standby streaming from it: that standby "
        "replays this migration only once it reconnects, and reads there see the old schema until then"
    ]
    down.start()
    replicated.cluster.wait_for_replay()
    assert snapshot(replicated.on(down)) == snapshot(replicated.primary)


def test_wait_for_standbys_reports_who_is_behind_at_the_bound_and_returns_as_soon_as_all_replayed(
    replicated: Replicated, add_standby: AddStandby
) -> None:
    stalled = add_standby()
    primary_url = replicated.cluster.primary.url()
    with replay_paused(stalled):
        with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
            primary.execute("CREATE TABLE written (id int)")
        behind = wait_for_standbys(primary_url.render_as_string(hide_password=False), 0.2)

        assert behind.waited >= 0.2
        assert [standby.name for standby in behind.behind] == [stalled.name]
        assert behind.behind[0].bytes_behind > 0
        assert [s.name for s in behind.standbys if s.replayed] == ["standby1"]

    engine = create_engine(primary_url, poolclass=NullPool)
    with engine.connect() as connection:
        caught_up = wait_for_standbys(connection, 30, lsn=behind.lsn)
        assert not connection.in_transaction()  # it ended the transaction it began, none other
    engine.dispose()
    assert caught_up.caught_up
    assert {standby.name for standby in caught_up.standbys} == {"standby1", stalled.name}
    assert caught_up.waited < 30


@embedded_postgres_only
def test_a_role_that_cannot_see_the_standbys_progress_is_told_to_get_pg_monitor_before_anything_changes(
    replicated: Replicated, tmp_path: Path
) -> None:
    role = f"app_{replicated.name}"
    with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
        primary.execute(f'CREATE ROLE "{role}" LOGIN')
        primary.execute(f'ALTER SCHEMA public OWNER TO "{role}"')
    as_role = replicated.primary.set(username=role)
    try:
        with pytest.raises(ReplicaVisibilityError, match="grant it pg_monitor"):
            wait_for_standbys(as_role, 1)
        settings = {"MIGRATION_WAIT_FOR_REPLICAS": "5"}
        refused = run_alembic("upgrade", "head", url=as_role, workdir=tmp_path, env=settings)
        assert refused.returncode != 0
        assert refused.message == [
            "FAILED: pg_stat_replication hides the standbys' progress from this role: grant it pg_monitor "
            "(GRANT pg_monitor TO <role>), or unset MIGRATION_WAIT_FOR_REPLICAS; nothing was changed"
        ]
        assert snapshot(replicated.primary) == []
        current = run_alembic("current", url=as_role, workdir=tmp_path, env=settings)
        assert current.returncode == 0, current.output  # it migrates nothing: nothing to wait for

        with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
            primary.execute(f'GRANT pg_monitor TO "{role}"')
        allowed = run_alembic("upgrade", "head", url=as_role, workdir=tmp_path, env=settings)
        assert allowed.returncode == 0, allowed.output
    finally:
        with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
            primary.execute(f'REASSIGN OWNED BY "{role}" TO postgres')
            primary.execute(f'DROP OWNED BY "{role}"')
            primary.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"MIGRATION_WAIT_FOR_REPLICAS": "soon"}, "MIGRATION_WAIT_FOR_REPLICAS='soon' is not a number"),
        (
            {"MIGRATION_WAIT_FOR_REPLICAS": "5", "MIGRATION_REPLICA_LAG_FAILS": "maybe"},
            "MIGRATION_REPLICA_LAG_FAILS='maybe' is neither true nor false",
        ),
    ],
    ids=["wait", "fails"],
)
def test_a_bad_replica_setting_gets_one_line_and_changes_nothing(
    setting: dict[str, str], expected: str, make_database: MakeDatabase, tmp_path: Path
) -> None:
    url = make_database()  # read before any connection: no standby needed
    result = run_alembic("upgrade", "head", url=url, workdir=tmp_path, env=setting)
    assert result.returncode != 0
    assert len(result.message) == 1, result.output
    assert result.message[0].startswith(f"FAILED: {expected}")
    assert snapshot(url) == []


def test_the_migrators_commits_are_synchronous_while_it_waits_even_where_synchronous_commit_is_off(
    replicated: Replicated,
) -> None:
    # With synchronous_commit off, a commit may not yet be in pg_current_wal_lsn(), what is waited for.
    with psycopg.connect(conninfo(replicated.primary), autocommit=True) as primary:
        primary.execute(f'ALTER DATABASE "{replicated.name}" SET synchronous_commit = off')
    engine = create_engine(replicated.primary, poolclass=NullPool)
    with engine.connect() as connection, waiting_for_standbys(connection, ReplicaWait(bound=5)):
        assert connection.execute(text("SHOW synchronous_commit")).scalar_one() == "local"
    engine.dispose()
