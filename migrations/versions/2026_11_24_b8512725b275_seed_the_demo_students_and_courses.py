"""seed the demo students and courses

Revision ID: b8512725b275
Revises: e80b7d113562
Create Date: 2026-11-24 19:46:02.113470+00:00

The seed tutorial's data: Alice in Mathematics and History, Bob in Mathematics.

Rules, so that a user's data is never lost or changed:
- Upgrade only inserts. A student or course whose name or title already exists is
  reused, not duplicated; an enrollment that exists is skipped. Each row it does insert
  is recorded in ``alembic_seed_rows``, migration bookkeeping beside alembic_version.
- Downgrade deletes only recorded rows: the recorded enrollments, then each recorded
  student or course that is unrenamed and that no remaining enrollment references.
  A user's rows, a user's enrollment in a seeded course, and whatever such an enrollment
  references, all stay.
- Every statement is plain SQL: it imports nothing from models/, runs the same in
  offline (--sql) mode, and reaches large tables only through their indexes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b8512725b275"
down_revision: str | Sequence[str] | None = "e80b7d113562"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STUDENTS = ("Alice", "Bob")
COURSES = ("Mathematics", "History")
ENROLLMENTS = (("Alice", "Mathematics"), ("Alice", "History"), ("Bob", "Mathematics"))


def values(*rows: tuple[str, ...]) -> str:
    return ", ".join("(" + ", ".join(f"'{value}'" for value in row) + ")" for row in rows)


def seed_named(table: str, column: str, names: tuple[str, ...]) -> None:
    numbered = values(*((str(number), name) for number, name in enumerate(names)))
    op.execute(
        f"""
        WITH seed(position, {column}) AS (VALUES {numbered}),
        inserted AS (
            INSERT INTO {table} ({column})
            SELECT {column} FROM seed
            WHERE NOT EXISTS (SELECT FROM {table} AS existing WHERE existing.{column} = seed.{column})
            ORDER BY position
            RETURNING id
        )
        INSERT INTO alembic_seed_rows (table_name, row_key)
        SELECT '{table}', ARRAY[id] FROM inserted
        ON CONFLICT DO NOTHING
        """
    )


def delete_seeded_named(table: str, column: str, names: tuple[str, ...], referencing_column: str) -> None:
    op.execute(
        f"""
        DELETE FROM {table} AS seeded
        USING alembic_seed_rows AS recorded
        WHERE recorded.table_name = '{table}'
          AND seeded.id = recorded.row_key[1]
          AND seeded.{column} IN ({values(names).replace("(", "").replace(")", "")})
          AND NOT EXISTS (SELECT FROM student_course WHERE {referencing_column} = seeded.id)
        """
    )


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS alembic_seed_rows (
            table_name text NOT NULL,
            row_key bigint[] NOT NULL,
            CONSTRAINT pk_alembic_seed_rows PRIMARY KEY (table_name, row_key)
        )
        """
    )
    seed_named("students", "name", STUDENTS)
    seed_named("courses", "title", COURSES)
    op.execute(
        f"""
        WITH seed(name, title) AS (VALUES {values(*ENROLLMENTS)}),
        -- One pass over each table finds every seed row's id, however many pairs there are.
        student AS (
            SELECT name, min(id) AS id FROM students WHERE name IN (SELECT name FROM seed) GROUP BY name
        ),
        course AS (
            SELECT title, min(id) AS id FROM courses WHERE title IN (SELECT title FROM seed) GROUP BY title
        ),
        inserted AS (
            INSERT INTO student_course (student_id, course_id)
            SELECT student.id, course.id
            FROM seed JOIN student USING (name) JOIN course USING (title)
            ON CONFLICT DO NOTHING
            RETURNING student_id, course_id
        )
        INSERT INTO alembic_seed_rows (table_name, row_key)
        SELECT 'student_course', ARRAY[student_id, course_id] FROM inserted
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM student_course AS seeded
        USING alembic_seed_rows AS recorded
        WHERE recorded.table_name = 'student_course'
          AND seeded.student_id = recorded.row_key[1]
          AND seeded.course_id = recorded.row_key[2]
        """
    )
    delete_seeded_named("students", "name", STUDENTS, "student_id")
    delete_seeded_named("courses", "title", COURSES, "course_id")
    op.execute("DROP TABLE alembic_seed_rows")
