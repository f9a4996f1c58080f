"""a CHECK added NOT VALID and validated in the same transaction (the benchmark's naive way)

Revision ID: 0a11d47e0001
Revises: e104c87e9452

Kept for bench/live.py only. NOT VALID alone is right; VALIDATE in the same transaction keeps
the ACCESS EXCLUSIVE lock ADD CONSTRAINT took for the whole scan of the table. VALIDATE in a
transaction of its own would take only SHARE UPDATE EXCLUSIVE.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0a11d47e0001"
down_revision: str | Sequence[str] | None = "e104c87e9452"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE student_course ADD CONSTRAINT ck_student_course_ids_positive "
        "CHECK (student_id > 0 AND course_id > 0) NOT VALID"
    )
    op.execute("ALTER TABLE student_course VALIDATE CONSTRAINT ck_student_course_ids_positive")


def downgrade() -> None:
    op.execute("ALTER TABLE student_course DROP CONSTRAINT ck_student_course_ids_positive")
