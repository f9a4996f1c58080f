"""A migration that queues behind another session's lock gives up after lock_timeout, and retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from migrations import ALEMBIC_INI
from migrations.bookkeeping import SCHEMA_REVISION
from migrations.database.url import conninfo
from tests.helpers.activity import wait_for_sessions
from tests.helpers.forked_cli import run_alembic, start_alembic
from tests.helpers.snapshots import snapshot, versions
from tests.helpers.types import MakeDatabase

HEAD = ScriptDirectory.from_config(Config(ALEMBIC_INI)).get_current_head()


@pytest.fixture
def schema_url(make_database: MakeDatabase, tmp_path: Path) -> URL:
    """A database migrated to the schema revision, not yet seeded (the seed inserts into students)."""
    url = make_database()
    run_alembic("upgrade", SCHEMA_REVISION, url=url, workdir=tmp_path)
    return url


@dataclass
class Holder:
    url: URL
    connection: psycopg.Connection[Any]
    pid: int
    snapshot_before: list[str]


@pytest.fixture
def holder_of_students(request: pytest.FixtureRequest) -> Iterator[Holder]:
    """A session holding ACCESS EXCLUSIVE on students, as a long transaction would."""
    url: URL = request.getfixturevalue(request.param)
    before = snapshot(url)  # reading the catalog would wait for the lock too
    with psycopg.connect(conninfo(url)) as holder:
        holder.execute("LOCK TABLE students IN ACCESS EXCLUSIVE MODE")
        yield Holder(url, holder, holder.info.backend_pid, before)
        holder.rollback()


SEED_STEPS = {
    "seed upgrade": ("schema_url", ("upgrade", "head")),
    "seed downgrade": ("seeded_url", ("downgrade", "-1")),
}


@pytest.mark.parametrize(
    ("holder_of_students", "command"),
    [pytest.param(start, command, id=name) for name, (start, command) in SEED_STEPS.items()],
    indirect=["holder_of_students"],
)
def test_a_migration_blocked_by_a_table_lock_retries_then_fails_naming_the_holder_and_changes_nothing(
    holder_of_students: Holder, command: tuple[str, ...], tmp_path: Path
) -> None:
    url, pid = holder_of_students.url, holder_of_students.pid
    settings = {"MIGRATION_LOCK_TIMEOUT": "300ms", "MIGRATION_LOCK_RETRIES": "1"}

    result = run_alembic(*command, url=url, workdir=tmp_path, env=settings)

    assert result.returncode != 0
    assert "Traceback" not in result.output
    retries = [line for line in result.message if "; retrying in 1s (retry 1 of 1," in line]
    assert len(retries) == 1, result.output
    [failure] = [line for line in result.message if line.startswith("FAILED")]
    assert failure.startswith(
        "FAILED: a migration waited longer than lock_timeout (300ms) for a lock another session holds, "
        "2 times (MIGRATION_LOCK_RETRIES=1); the database stays at its revision; the lock was held by "
        f"pid {pid}, in a transaction for "
    ), failure
    assert "s: LOCK TABLE students IN ACCESS EXCLUSIVE MODE" in failure
    assert failure.endswith(
        "Retry when that session ends (see pg_stat_activity), or raise MIGRATION_LOCK_TIMEOUT"
    )
    assert len(result.message) == 2, result.output
    holder_of_students.connection.rollback()
    assert snapshot(url) == holder_of_students.snapshot_before


@pytest.mark.parametrize("holder_of_students", ["schema_url"], indirect=True)
def test_a_migration_retried_after_the_holder_commits_succeeds(
    holder_of_students: Holder, tmp_path: Path
) -> None:
    url, holder = holder_of_students.url, holder_of_students.connection
    settings = {"MIGRATION_LOCK_TIMEOUT": "300ms", "MIGRATION_LOCK_RETRIES": "2"}
    migrator = start_alembic("upgrade", "head", url=url, workdir=tmp_path, env=settings)
    wait_for_sessions(url, "wait_event_type = 'Lock'")
    time.sleep(0.5)  # past the first lock_timeout: the migrator is waiting to retry
    holder.commit()

    result = migrator.finish()

    assert result.returncode == 0, result.output
    assert sum("; retrying in " in line for line in result.message) == 1, result.output
    assert versions(url) == [HEAD]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [({}, "500ms"), ({"MIGRATION_LOCK_TIMEOUT": "1s"}, "1s")],
    ids=["default", "MIGRATION_LOCK_TIMEOUT=1s"],
)
def test_lock_timeout_is_half_a_second_unless_migration_lock_timeout_says_otherwise(
    setting: dict[str, str], expected: str, make_database: MakeDatabase, tmp_path: Path
) -> None:
    # Offline SQL shows the session settings online runs make too (runner.Settings).
    result = run_alembic("upgrade", "head", "--sql", url=make_database(), workdir=tmp_path, env=setting)

    assert result.returncode == 0
    assert f"SET lock_timeout = '{expected}';" in result.stdout.splitlines()
