"""a CHECK added NOT VALID, then validated in a transaction of its own (the benchmark's own way)

Revision ID: 5afe00000001
Revises: the project's head (bench/live.py chains it there)

Kept for bench/live.py only: the counterpart of bench/naive/'s CHECK validated in the transaction
that added it. ``add_check_constraint`` adds it NOT VALID (ACCESS EXCLUSIVE for milliseconds,
no scan), commits, then validates it under SHARE UPDATE EXCLUSIVE, which blocks no read or write.
"""

from collections.abc import Sequence

from alembic import op

from migrations.operations import add_check_constraint

revision: str = "5afe00000001"
down_revision: str | Sequence[str] | None = "<the project head>"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_check_constraint(
        "ck_student_course_ids_positive", "student_course", "student_id > 0 AND course_id > 0"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE student_course DROP CONSTRAINT ck_student_course_ids_positive")
