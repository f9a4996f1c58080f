"""Downgrading through the schema revision never drops a user's rows silently."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy import URL

from migrations.database.url import conninfo
from tests.helpers.forked_cli import run_alembic
from tests.helpers.snapshots import snapshot


@pytest.fixture
def url_with_user_rows(head_url: URL) -> URL:
    """The seeded database plus a user's student, course and two enrollments (one in a seeded course)."""
    with psycopg.connect(conninfo(head_url)) as conn:
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
    return head_url


def test_a_downgrade_through_the_schema_refuses_naming_each_table_and_count_and_changes_nothing(
    url_with_user_rows: URL, tmp_path: Path
) -> None:
    before = snapshot(url_with_user_rows)

    result = run_alembic("downgrade", "base", url=url_with_user_rows, workdir=tmp_path)

    assert result.returncode != 0
    # The seed's own rows are gone by then, except Mathematics, which Carol's enrollment keeps.
    assert result.message == [
        "FAILED: migration failed, nothing was committed for it: students holds 1 rows; "
        "courses holds 2 rows; student_course holds 2 rows; downgrading would drop these rows, "
        "which the seed did not add. Nothing was changed. Back them up, then run: "
        "alembic -x allow_data_loss=true downgrade ..."
    ]
    # Nor the seed's downgrade, which ran first in the same transaction.
    assert snapshot(url_with_user_rows) == before


def test_allow_data_loss_lets_the_downgrade_drop_the_users_rows(
    url_with_user_rows: URL, tmp_path: Path
) -> None:
    result = run_alembic(
        "-x", "allow_data_loss=true", "downgrade", "base", url=url_with_user_rows, workdir=tmp_path
    )

    assert result.returncode == 0, result.output
    remaining = snapshot(url_with_user_rows)
    assert [line for line in remaining if line.startswith(("relation ", "row "))] == [
        "relation alembic_version kind=r persistence=p"
    ]
