"""Migrators that run at once (replicas at deploy time) are serialized by env.py's advisory lock."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI, SCRIPT_LOCATION
from migrations.bookkeeping import MIGRATION_LOCK_KEY
from migrations.database.url import conninfo
from migrations.runner import WAITING_FOR_THE_LOCK
from tests.helpers.activity import wait_for_sessions
from tests.helpers.forked_cli import Finished, run_alembic, start_alembic
from tests.helpers.snapshots import snapshot
from tests.helpers.types import EngineAt, MakeDatabase

MIGRATORS = 8
HISTORY = ScriptDirectory.from_config(Config(ALEMBIC_INI))


def wait_until_polling_for_the_lock(url: URL, migrators: int = 1) -> None:
    """Return once `migrators` processes connected to `url` wait for the migration lock."""
    wait_for_sessions(url, "application_name = %s", (WAITING_FOR_THE_LOCK,), count=migrators)


def at_once(url: URL, tmp_path: Path, *args: str) -> list[Finished]:
    """Run `alembic *args` in MIGRATORS processes that all start before any of them migrates."""
    with psycopg.connect(conninfo(url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        runs = [start_alembic(*args, url=url, workdir=tmp_path) for _ in range(MIGRATORS)]
        wait_until_polling_for_the_lock(url, MIGRATORS)
    results = [run.finish() for run in runs]
    assert [result.returncode for result in results] == [0] * MIGRATORS, [r.output for r in results]
    return results


def test_eight_concurrent_upgrades_to_head_leave_exactly_what_one_upgrade_leaves(
    make_database: MakeDatabase, head_template: str, tmp_path: Path
) -> None:
    url = make_database()
    results = at_once(url, tmp_path, "upgrade", "head")

    # One migrator applied the revisions; every other one then found the database at head.
    assert sum("Running upgrade" in result.stderr for result in results) == 1
    assert snapshot(url) == snapshot(url.set(database=head_template))
    with psycopg.connect(conninfo(url)) as conn:
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone() == (True,)


@pytest.fixture
def empty_url(make_database: MakeDatabase) -> URL:
    return make_database()


@pytest.mark.parametrize(
    ("start", "command", "reached"),
    [
        ("head_url", ("downgrade", "-1"), HISTORY.get_revision("head").down_revision),
        ("empty_url", ("upgrade", "+1"), HISTORY.get_base()),
    ],
    ids=["downgrade -1 from head", "upgrade +1 from empty"],
)
def test_eight_concurrent_one_step_migrations_move_the_database_one_step_not_eight(
    start: str,
    command: tuple[str, str],
    reached: str,
    request: pytest.FixtureRequest,
    make_database: MakeDatabase,
    tmp_path: Path,
) -> None:
    url: URL = request.getfixturevalue(start)
    results = at_once(url, tmp_path, *command)

    assert sum(f"Running {command[0]}" in result.stderr for result in results) == 1
    assert sum("already moved the database" in result.stderr for result in results) == MIGRATORS - 1
    # Exactly what one step leaves: what upgrading an empty database to that revision builds.
    one_step = make_database()
    assert run_alembic("upgrade", reached, url=one_step, workdir=tmp_path).returncode == 0
    assert snapshot(url) == snapshot(one_step)


def test_a_relative_downgrade_refuses_when_another_migrator_moved_the_database_elsewhere_meanwhile(
    make_database: MakeDatabase, engine_at: EngineAt, tmp_path: Path
) -> None:
    url = make_database()
    below_head = HISTORY.get_revision("head").down_revision
    assert isinstance(below_head, str)
    assert run_alembic("upgrade", below_head, url=url, workdir=tmp_path).returncode == 0
    with engine_at(url).connect() as holder:
        holder.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
        holder.commit()
        downgrade = start_alembic("downgrade", "-1", url=url, workdir=tmp_path)
        wait_until_polling_for_the_lock(url)
        # Another migrator, holding the lock, upgrades to head while `downgrade -1` waits.
        config = Config()
        config.set_main_option("script_location", str(SCRIPT_LOCATION))
        config.attributes["connection"] = holder
        command.upgrade(config, "head")
        holder.commit()
        before = snapshot(url)
        holder.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
        result = downgrade.finish()

    assert result.returncode != 0
    assert len(result.message) == 1, result.output
    assert f"the database moved from {below_head} to {HISTORY.get_current_head()}" in result.message[0]
    assert "nothing was changed" in result.message[0]
    assert snapshot(url) == before


def test_a_migrator_gives_up_with_a_clear_message_when_another_holds_the_lock_too_long(
    make_database: MakeDatabase, tmp_path: Path
) -> None:
    url = make_database()
    with psycopg.connect(conninfo(url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        started = time.monotonic()
        result = run_alembic("upgrade", "head", url=url, workdir=tmp_path, env={"MIGRATION_LOCK_WAIT": "0.5"})
        waited = time.monotonic() - started

    assert result.returncode != 0
    assert 0.5 <= waited < 10
    assert result.message == [
        "FAILED: another migration has held the migration lock for over 0.5s (MIGRATION_LOCK_WAIT); "
        "nothing was changed. Wait for it to finish, or find it in pg_locks (locktype 'advisory')"
    ]
    assert snapshot(url) == []
