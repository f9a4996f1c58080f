from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, Identity, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base

if TYPE_CHECKING:
    from models.student_course import Enrollment
    from models.students import Student


class Course(Base):
    __tablename__ = "courses"
    __table_args__ = (CheckConstraint(r"title ~ '\S'", name="title_not_blank"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    title: Mapped[str] = mapped_column(Text)

    students: Mapped[list[Student]] = relationship(
        secondary="student_course",
        back_populates="courses",
        order_by="Student.id",
        passive_deletes=True,
    )
    enrollments: Mapped[list[Enrollment]] = relationship(
        back_populates="course",
        viewonly=True,
        order_by="Enrollment.student_id",
    )

    def __repr__(self) -> str:
        return f"Course(id={self.id!r}, title={self.title!r})"
