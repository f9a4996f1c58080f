"""index a course's newest enrollments

Revision ID: 84b232aa648e
Revises: e104c87e9452
Create Date: 2026-11-26 05:27:15.004538+00:00

Serves "a course's students, newest enrollment first, unknown dates last" (models.queries.
newest_students_of) by an index-only scan with no sort: ``enrolled_at DESC NULLS LAST`` puts the
undated last in the index itself, and ``student_id DESC`` makes "after the last row seen" one row
comparison. It also serves the plain "students of a course", so the (course_id, student_id)
index can go (c8ba068faa73).

Autogenerate wrote a plain CREATE INDEX: on 10 million rows it holds SHARE, which blocks every
insert, update and delete, for the whole build (seconds). Built CONCURRENTLY instead: SHARE UPDATE
EXCLUSIVE, which blocks no read or write, under the slow statements' timeouts (the build waits for
older transactions). If a build fails or is cancelled it leaves an INVALID index, which the next
run drops and builds again. The build commits on its own (autocommit block): PostgreSQL cannot
build concurrently inside a transaction.
"""

from collections.abc import Sequence

from migrations.operations import create_index_concurrently, drop_index_concurrently

revision: str = "84b232aa648e"
down_revision: str | Sequence[str] | None = "e104c87e9452"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_student_course_course_id_enrolled_at_student_id"


def upgrade() -> None:
    create_index_concurrently(
        INDEX, "student_course", ["course_id", "enrolled_at DESC NULLS LAST", "student_id DESC"]
    )


def downgrade() -> None:
    drop_index_concurrently(INDEX)
