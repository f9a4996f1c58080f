"""A migration that queues behind another session's lock gives up after lock_timeout."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL

from migrations.bookkeeping import SCHEMA_REVISION
from migrations.database.url import conninfo
from tests.helpers.forked_cli import run_alembic
from tests.helpers.snapshots import snapshot
from tests.helpers.types import MakeDatabase


@pytest.fixture
def schema_url(make_database: MakeDatabase, tmp_path: Path) -> URL:
    """A database migrated to the schema revision, not yet seeded (the seed inserts into students)."""
    url = make_database()
    run_alembic("upgrade", SCHEMA_REVISION, url=url, workdir=tmp_path)
    return url


@pytest.mark.parametrize(
    ("start", "command"),
    [("schema_url", ("upgrade", "head")), ("head_url", ("downgrade", "-1"))],
    ids=["seed upgrade", "seed downgrade"],
)
def test_a_migration_blocked_by_a_table_lock_fails_after_lock_timeout_and_changes_nothing(
    start: str, command: tuple[str, ...], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url: URL = request.getfixturevalue(start)
    before = snapshot(url)
    with psycopg.connect(conninfo(url)) as holder:
        holder.execute("LOCK TABLE students IN ACCESS EXCLUSIVE MODE")
        result = run_alembic(*command, url=url, workdir=tmp_path, env={"MIGRATION_LOCK_TIMEOUT": "1s"})
        holder.rollback()

    assert result.returncode != 0
    assert "Traceback" not in result.output
    assert result.message == [
        "FAILED: a migration waited longer than lock_timeout (1s) for a lock another session holds; "
        "the database stays at its revision. Retry when that session ends (see pg_stat_activity), "
        "or raise MIGRATION_LOCK_TIMEOUT"
    ]
    assert snapshot(url) == before


@pytest.mark.parametrize(
    ("setting", "expected"),
    [({}, "3s"), ({"MIGRATION_LOCK_TIMEOUT": "1s"}, "1s")],
    ids=["default", "MIGRATION_LOCK_TIMEOUT=1s"],
)
def test_lock_timeout_is_a_few_seconds_unless_migration_lock_timeout_says_otherwise(
    setting: dict[str, str], expected: str, make_database: MakeDatabase, tmp_path: Path
) -> None:
    # Offline SQL shows the session settings online runs make too (runner.Settings).
    result = run_alembic("upgrade", "head", "--sql", url=make_database(), workdir=tmp_path, env=setting)

    assert result.returncode == 0
    assert f"SET lock_timeout = '{expected}';" in result.stdout.splitlines()
