"""A downgrade never drops what users stored silently: their rows, or the dates of their enrollments."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL

from migrations.database.url import conninfo
from tests.helpers.forked_cli import run_alembic
from tests.helpers.snapshots import snapshot, versions

DATED_ENROLLMENTS_REVISION = "e104c87e9452"


def add_user_rows(url: URL) -> URL:
    """A user's student, course and two enrollments (one in a seeded course)."""
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute(
            """
            WITH carol AS (INSERT INTO students (name) VALUES ('Carol') RETURNING id),
                 physics AS (INSERT INTO courses (title) VALUES ('Physics') RETURNING id)
            INSERT INTO student_course (student_id, course_id)
            SELECT carol.id, physics.id FROM carol, physics
            UNION ALL
            SELECT carol.id, courses.id FROM carol, courses WHERE courses.title = 'Mathematics'
            """
        )
    return url


def user_rows(url: URL) -> list[str]:
    return [line for line in snapshot(url) if line.startswith("row ") and " alembic_version " not in line]


@pytest.fixture
def seeded_with_user_rows(seeded_url: URL) -> URL:
    return add_user_rows(seeded_url)


@pytest.fixture
def head_with_user_rows(head_url: URL) -> URL:
    return add_user_rows(head_url)


def test_a_downgrade_through_the_schema_refuses_naming_each_table_and_count_and_changes_nothing(
    seeded_with_user_rows: URL, tmp_path: Path
) -> None:
    before = snapshot(seeded_with_user_rows)

    result = run_alembic("downgrade", "base", url=seeded_with_user_rows, workdir=tmp_path)

    assert result.returncode != 0
    # The seed's own rows are gone by then, except Mathematics, which Carol's enrollment keeps.
    assert result.message == [
        "FAILED: migration failed, nothing was committed for it: students holds 1 row; "
        "courses holds 2 rows; student_course holds 2 rows; downgrading would drop them (rows users "
        "added, and seeded rows their rows still reference; the seed's others are gone). Back them "
        "up, then run: alembic -x allow_data_loss=true downgrade ..."
    ]
    # Nor the seed's downgrade, which ran first in the same transaction.
    assert snapshot(seeded_with_user_rows) == before


def test_a_downgrade_that_drops_enrollment_dates_refuses_naming_the_column_and_count(
    head_with_user_rows: URL, tmp_path: Path
) -> None:
    rows_before = user_rows(head_with_user_rows)

    result = run_alembic("downgrade", "base", url=head_with_user_rows, workdir=tmp_path)

    assert result.returncode != 0
    assert result.message == [
        "FAILED: migration failed, nothing was committed for it: student_course.enrolled_at is set in 2 "
        "rows; downgrading would drop them. Back them up, then run: alembic -x allow_data_loss=true "
        "downgrade ..."
    ]
    # The index revisions above it commit on their own (concurrent builds cannot run in a
    # transaction); from the revision that drops data down, nothing ran, and no row changed.
    assert versions(head_with_user_rows) == [DATED_ENROLLMENTS_REVISION]
    assert user_rows(head_with_user_rows) == rows_before


def test_allow_data_loss_lets_the_downgrade_drop_the_users_rows(
    head_with_user_rows: URL, tmp_path: Path
) -> None:
    result = run_alembic(
        "-x", "allow_data_loss=true", "downgrade", "base", url=head_with_user_rows, workdir=tmp_path
    )

    assert result.returncode == 0, result.output
    remaining = snapshot(head_with_user_rows)
    assert [line for line in remaining if line.startswith(("relation ", "row "))] == [
        "relation alembic_version kind=r persistence=p"
    ]
