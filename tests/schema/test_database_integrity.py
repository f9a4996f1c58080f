"""The database itself refuses bad rows, whoever writes them: plain SQL through psycopg, no ORM."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from migrations.database.url import conninfo
from tests.helpers.types import MakeDatabase

Conn = psycopg.Connection[tuple[Any, ...]]
SOME_STUDENT, UNKNOWN_STUDENT = "(SELECT min(id) FROM students)", "(SELECT max(id) + 1 FROM students)"
SOME_COURSE, UNKNOWN_COURSE = "(SELECT min(id) FROM courses)", "(SELECT max(id) + 1 FROM courses)"


@pytest.fixture(scope="module")
def seeded(make_database: MakeDatabase, head_template: str) -> Iterator[Conn]:
    with psycopg.connect(conninfo(make_database(template=head_template))) as conn:
        yield conn


@pytest.fixture
def conn(seeded: Conn) -> Iterator[Conn]:
    """The seeded database in a transaction that is rolled back after the test."""
    yield seeded
    seeded.rollback()


def refused(conn: Conn, sql: str, *params: object) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as raised, conn.transaction():
        conn.execute(sql, params)
    return raised.value


def scalar(conn: Conn, sql: str, *params: object) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def counts(conn: Conn) -> dict[str, int]:
    return {
        table: scalar(conn, f"SELECT count(*) FROM {table}")
        for table in ("students", "courses", "student_course")
    }


@pytest.mark.parametrize(
    ("student", "course", "constraint"),
    [
        (UNKNOWN_STUDENT, SOME_COURSE, "fk_student_course_student_id_students"),
        (SOME_STUDENT, UNKNOWN_COURSE, "fk_student_course_course_id_courses"),
    ],
    ids=["unknown student", "unknown course"],
)
def test_an_enrollment_naming_a_missing_student_or_course_is_refused_by_its_foreign_key(
    conn: Conn, student: str, course: str, constraint: str
) -> None:
    error = refused(conn, f"INSERT INTO student_course (student_id, course_id) SELECT {student}, {course}")

    assert isinstance(error, errors.ForeignKeyViolation)
    assert error.diag.constraint_name == constraint


def test_enrolling_a_student_in_the_same_course_twice_is_refused_by_the_primary_key(
    conn: Conn,
) -> None:
    error = refused(
        conn, "INSERT INTO student_course SELECT student_id, course_id FROM student_course LIMIT 1"
    )

    assert isinstance(error, errors.UniqueViolation)
    assert error.diag.constraint_name == "pk_student_course"


@pytest.mark.parametrize(("table", "column"), [("students", "name"), ("courses", "title")])
def test_a_null_name_or_title_is_refused(conn: Conn, table: str, column: str) -> None:
    error = refused(conn, f"INSERT INTO {table} ({column}) VALUES (NULL)")

    assert isinstance(error, errors.NotNullViolation)
    assert (error.diag.table_name, error.diag.column_name) == (table, column)


@pytest.mark.parametrize(
    "blank", ["", " ", "   ", "\t\n"], ids=["empty", "space", "spaces", "tab and newline"]
)
@pytest.mark.parametrize(
    ("table", "column", "constraint"),
    [("students", "name", "ck_students_name_not_blank"), ("courses", "title", "ck_courses_title_not_blank")],
)
def test_a_blank_name_or_title_is_refused_by_its_check_constraint(
    conn: Conn, table: str, column: str, constraint: str, blank: str
) -> None:
    inserted = refused(conn, f"INSERT INTO {table} ({column}) VALUES (%s)", blank)
    updated = refused(conn, f"UPDATE {table} SET {column} = %s", blank)

    for error in (inserted, updated):
        assert isinstance(error, errors.CheckViolation)
        assert error.diag.constraint_name == constraint


@pytest.mark.parametrize(
    ("table", "column", "value", "referencing"),
    [("students", "name", "Alice", "student_id"), ("courses", "title", "Mathematics", "course_id")],
)
def test_deleting_a_student_or_course_removes_its_enrollments_and_nothing_else(
    conn: Conn, table: str, column: str, value: str, referencing: str
) -> None:
    row = scalar(conn, f"SELECT id FROM {table} WHERE {column} = %s", value)
    enrollments = scalar(conn, f"SELECT count(*) FROM student_course WHERE {referencing} = %s", row)
    before = counts(conn)

    conn.execute(f"DELETE FROM {table} WHERE id = %s", (row,))

    assert enrollments > 0
    assert counts(conn) == {
        **before,
        table: before[table] - 1,
        "student_course": before["student_course"] - enrollments,
    }
