"""The seed data migration: its rows at head, its rules for user rows, its idempotence."""

from alembic import command
from sqlalchemy import URL

from migrations.bookkeeping import SCHEMA_REVISION, SEED_REVISION
from migrations.database.scratch import alembic_config
from tests.helpers.snapshots import execute, rows
from tests.helpers.types import MakeDatabase

SEED_ENROLLMENTS = {("Alice", "Mathematics"), ("Alice", "History"), ("Bob", "Mathematics")}

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
