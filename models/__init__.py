"""Students and courses, joined many-to-many through the ``student_course`` table.

Import everything from here: ``from models import Base, Student, Course, student_course``.
Importing the package registers every table on ``Base.metadata``, which is what
Alembic's autogenerate compares against the database.
"""

from models.base import Base, metadata
from models.courses import Course
from models.student_course import student_course
from models.students import Student

__all__ = ["Base", "Course", "Student", "metadata", "student_course"]
