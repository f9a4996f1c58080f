"""Students and courses, joined many-to-many through ``student_course``, whose rows are ``Enrollment``s.

``metadata`` is the schema: every table, what Alembic's autogenerate compares with the
database and what ``create_all`` would build. Importing this package registers every table
on it. A new mapped class subclasses ``models.base.Base``; the queries over the tables are in
``models.queries``.
"""

from models import base
from models.courses import Course
from models.student_course import Enrollment, student_course
from models.students import Student

metadata = base.Base.metadata

__all__ = ["Course", "Enrollment", "Student", "metadata", "student_course"]
