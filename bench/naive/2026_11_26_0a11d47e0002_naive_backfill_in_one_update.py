"""a throwaway column backfilled by one UPDATE (the benchmark's naive way)

Revision ID: 0a11d47e0002
Revises: 0a11d47e0001

Kept for bench/live.py only. Adding the column is metadata only; the backfill is one UPDATE of
the enrollments in the first 1,000 courses (a tenth of them), which keeps each row it changed
locked until it commits: any write to any of them waits for the whole UPDATE. The benchmark's
own way (bench/safe/) fills the same rows in batches.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0a11d47e0002"
down_revision: str | Sequence[str] | None = "0a11d47e0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE student_course ADD COLUMN backfilled boolean")
    with op.get_context().autocommit_block():
        op.execute("UPDATE student_course SET backfilled = true WHERE course_id <= 1000")


def downgrade() -> None:
    op.execute("ALTER TABLE student_course DROP COLUMN backfilled")
