"""The association object: ``Enrollment``, one row of ``student_course`` per student in a course.

The seed joined students and courses through a bare association table and noted that it can
become a mapped class once the link carries data of its own. It now does: ``enrolled_at``, when
the student enrolled. Such a class is SQLAlchemy's association object pattern, combined here with
the plain many-to-many access the seed uses: ``Student.courses`` and ``Course.students`` still read
and write ``student_course`` directly (``secondary``), so ``student.courses.append(course)`` inserts
an enrollment and the database dates it (``DEFAULT now()``), while ``Student.enrollments`` and
``Course.enrollments`` read the enrollments themselves, dates included. Those two are read-only
(``viewonly``), so that one link is never written by two relationships; create an enrollment with
a date of your choosing as ``Enrollment(student_id=..., course_id=..., enrolled_at=...)``, or
through ``models.queries``.

- The composite primary key makes each enrollment unique and serves "courses of a student" by an
  index-only scan.
- ``ix_student_course_course_id_enrolled_at_student_id`` serves "students of a course", newest
  enrollment first, unknown dates last, by an index-only scan with no sort, and also the plain
  "students of a course", so no second index on (course_id, student_id) is kept.
- An enrollment made before dates were recorded has ``enrolled_at`` NULL: its date is unknown,
  and no date is made up for it.
- Both foreign keys cascade in the database, so deleting a student or a course removes its
  enrollments whoever issues the DELETE.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, cast

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Table, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base

if TYPE_CHECKING:
    from models.courses import Course
    from models.students import Student


class Enrollment(Base):
    __tablename__ = "student_course"

    student_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("students.id", ondelete="CASCADE"), primary_key=True
    )
    course_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True
    )
    enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())

    student: Mapped[Student] = relationship(back_populates="enrollments", viewonly=True)
    course: Mapped[Course] = relationship(back_populates="enrollments", viewonly=True)

    __table_args__ = (
        Index(
            "ix_student_course_course_id_enrolled_at_student_id",
            "course_id",
            enrolled_at.desc().nulls_last(),
            student_id.desc(),
        ),
    )

    def __repr__(self) -> str:
        return (
            f"Enrollment(student_id={self.student_id!r}, course_id={self.course_id!r}, "
            f"enrolled_at={self.enrolled_at!r})"
        )


# The seed's name for the table, for Core statements.
student_course = cast(Table, Enrollment.__table__)
