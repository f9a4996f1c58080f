"""a throwaway column backfilled in batches (the benchmark's own way)

Revision ID: 5afe00000002
Revises: 5afe00000001

Kept for bench/live.py only: the counterpart of bench/naive/'s one UPDATE of the enrollments in
the first 1,000 courses. Adding the column is metadata only; ``backfill`` then updates the same
rows in keyset batches along the primary key, each its own transaction, so no row stays locked
longer than one batch. Batches of 1,000 keys: here a batch of 10,000 (the helper's default)
takes about 0.3 s, and an application write to one of its rows would wait that long.
"""

from collections.abc import Sequence

from alembic import op

from migrations.operations import backfill

revision: str = "5afe00000002"
down_revision: str | Sequence[str] | None = "5afe00000001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE student_course ADD COLUMN backfilled boolean")
    backfill(
        "student_course",
        "backfilled = true",
        "backfilled IS NULL AND course_id <= 1000",
        name="bench_backfilled",
        key=["student_id", "course_id"],
        batch_size=1000,
    )


def downgrade() -> None:
    op.execute("ALTER TABLE student_course DROP COLUMN backfilled")
