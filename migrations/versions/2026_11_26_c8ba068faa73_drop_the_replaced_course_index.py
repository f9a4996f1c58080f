"""drop the course index the new one replaces

Revision ID: c8ba068faa73
Revises: 84b232aa648e
Create Date: 2026-11-26 05:27:18.201624+00:00

The contract step of expand/contract: (course_id, enrolled_at DESC NULLS LAST, student_id DESC),
built by the revision before this one, serves "students of a course" index-only too, so the
(course_id, student_id) index is one index more for every write to maintain and nothing more to
read (the benchmark's figures are in the README). It is dropped only after the new index exists,
so that queries of the release still running during a rolling deploy stay index-only throughout.

Autogenerate wrote a plain DROP INDEX: ACCESS EXCLUSIVE on student_course, queued behind every
open transaction on it and blocking every query queued behind it. Dropped CONCURRENTLY instead:
SHARE UPDATE EXCLUSIVE, which blocks no read or write. The downgrade builds it again, concurrently.
"""

from collections.abc import Sequence

from migrations.operations import create_index_concurrently, drop_index_concurrently

revision: str = "c8ba068faa73"
down_revision: str | Sequence[str] | None = "84b232aa648e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_student_course_course_id_student_id"


def upgrade() -> None:
    drop_index_concurrently(INDEX)


def downgrade() -> None:
    create_index_concurrently(INDEX, "student_course", ["course_id", "student_id"])
