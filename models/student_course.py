"""The association table joining students and courses many-to-many.

A Core ``Table`` rather than a mapped class: a row is nothing but the link, so the
ORM manages it through ``relationship(secondary=...)``. The composite primary key
makes each enrollment unique and serves "courses of a student" by an index-only
scan; the second index, on (course_id, student_id), serves "students of a course"
the same way. Both foreign keys cascade in the database, so deleting a student or a
course removes its enrollments whoever issues the DELETE.
"""

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Table

from models.base import Base

student_course = Table(
    "student_course",
    Base.metadata,
    Column(
        "student_id",
        BigInteger,
        ForeignKey("students.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "course_id",
        BigInteger,
        ForeignKey("courses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Index(None, "course_id", "student_id"),
)
