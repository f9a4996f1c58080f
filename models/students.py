from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, Identity, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base

if TYPE_CHECKING:
    from models.courses import Course
    from models.student_course import Enrollment


class Student(Base):
    __tablename__ = "students"
    __table_args__ = (CheckConstraint(r"name ~ '\S'", name="name_not_blank"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)

    courses: Mapped[list[Course]] = relationship(
        secondary="student_course",
        back_populates="students",
        order_by="Course.id",
        passive_deletes=True,
    )
    enrollments: Mapped[list[Enrollment]] = relationship(
        back_populates="student",
        viewonly=True,
        order_by="Enrollment.course_id",
    )

    def __repr__(self) -> str:
        return f"Student(id={self.id!r}, name={self.name!r})"
