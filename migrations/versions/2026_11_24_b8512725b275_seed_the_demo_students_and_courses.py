"""seed the demo students and courses

Revision ID: b8512725b275
Revises: e80b7d113562
Create Date: 2026-11-24 19:46:02.113470+00:00

The seed tutorial's data: Alice in Mathematics and History, Bob in Mathematics.

Rules, so that a user's data is never lost or changed:
- Upgrade only inserts. A student or course whose name or title already exists is
  reused, not duplicated; an enrollment that exists is skipped. Each row it does insert
  is recorded in ``alembic_seed_rows``, migration bookkeeping beside alembic_version.
- Downgrade deletes only rows it is sure it inserted: a recorded row whose ``xmin`` is its
  record's, since the seed inserts both in one transaction. A row a user changed (renamed,
  re-enrolled) has a new ``xmin``, and so does a user's row that took a recorded id after a
  ``TRUNCATE ... RESTART IDENTITY``; ``VACUUM FULL``, ``CLUSTER`` and freezing keep it. So it
  deletes the recorded enrollments, then each recorded student or course that no remaining
  enrollment references. A user's rows, a user's enrollment in a seeded course, and whatever
  such an enrollment references, all stay; a recorded row it is not sure of stays too, and
  the downgrade names it in a WARNING (psql prints it, and so does the online migrator).
  A table rewrite by ALTER TABLE (a column's type changed) gives every row a new ``xmin``:
  the seed's rows then stay, named in that WARNING.
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


def delete_seeded(table: str, referencing_column: str) -> None:
    op.execute(
        f"""
        DELETE FROM {table} AS seeded
        USING alembic_seed_rows AS recorded
        WHERE recorded.table_name = '{table}'
          AND seeded.id = recorded.row_key[1]
          AND seeded.xmin = recorded.xmin
          AND NOT EXISTS (SELECT FROM student_course WHERE {referencing_column} = seeded.id)
        """
    )


def warn_of_recorded_rows_not_sure_to_be_ours() -> None:
    """Name each recorded row kept because it changed, or was replaced, since the seed inserted it."""
    op.execute(
        """
        DO $$
        DECLARE kept text;
        BEGIN
            SELECT string_agg(kept_row, '; ' ORDER BY position, key) INTO kept FROM (
                SELECT 1 AS position, recorded.row_key AS key,
                       format('students id %s (%s)', seeded.id, seeded.name) AS kept_row
                FROM students AS seeded JOIN alembic_seed_rows AS recorded
                  ON recorded.table_name = 'students' AND seeded.id = recorded.row_key[1]
                WHERE seeded.xmin <> recorded.xmin
                UNION ALL
                SELECT 2, recorded.row_key, format('courses id %s (%s)', seeded.id, seeded.title)
                FROM courses AS seeded JOIN alembic_seed_rows AS recorded
                  ON recorded.table_name = 'courses' AND seeded.id = recorded.row_key[1]
                WHERE seeded.xmin <> recorded.xmin
                UNION ALL
                SELECT 3, recorded.row_key,
                       format('student_course (%s, %s)', seeded.student_id, seeded.course_id)
                FROM student_course AS seeded JOIN alembic_seed_rows AS recorded
                  ON recorded.table_name = 'student_course'
                 AND (seeded.student_id, seeded.course_id) = (recorded.row_key[1], recorded.row_key[2])
                WHERE seeded.xmin <> recorded.xmin
            ) AS not_sure;
            IF kept IS NOT NULL THEN
                RAISE WARNING 'the seed''s downgrade kept rows that changed or were replaced since it '
                    'inserted them: %', kept;
            END IF;
        END $$
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
          AND seeded.xmin = recorded.xmin
        """
    )
    delete_seeded("students", "student_id")
    delete_seeded("courses", "course_id")
    warn_of_recorded_rows_not_sure_to_be_ours()
    op.execute("DROP TABLE alembic_seed_rows")
