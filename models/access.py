"""Access paths that stay fast as the tables grow.

The roster loads every student's courses with ``selectinload``: one query for the
students, one more for all their courses, instead of one per student (N+1).
"""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from models.students import Student


def roster(session: Session) -> Sequence[Student]:
    """Every student, ordered by id, with their courses loaded."""
    return session.scalars(select(Student).options(selectinload(Student.courses)).order_by(Student.id)).all()
