"""The queries over the schema, each fast however large the tables grow.

- ``roster``: every student with their courses through ``selectinload``: one query for
  the students, then one per 500 students for all their courses, instead of one per
  student (N+1).
- ``iter_roster``: the same roster as (name, titles) from one aggregated query, read
  through a server-side cursor, ``batch`` rows at a time, so memory stays bounded
  however many students there are.
- ``student_ids_of`` / ``course_ids_of``: one side of the enrollments, read from an
  index of ``student_course`` alone (an index-only scan), never from a join, and
  returned in one array.
- ``enroll_many``: any number of pairs in one statement (``unnest`` of two arrays).
- ``enroll`` / ``unenroll``: one pair, idempotent, True when something changed.

An id that names no row raises ``UnknownStudentError`` or ``UnknownCourseError``, naming the
ids, and changes nothing. Nothing here commits: the caller does. The writes are SQL, not
collection appends, so a ``Student`` the session already holds keeps its old ``courses``
until it is expired (``session.expire(student)``) or the session commits.
"""

from collections.abc import Iterable, Iterator, Sequence

from psycopg.errors import ForeignKeyViolation
from sqlalchemy import Column, Select, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from models.courses import Course
from models.student_course import student_course
from models.students import Student


class UnknownIdError(LookupError):
    """Ids that name no row; ``ids`` holds them, sorted."""

    table = "row"

    def __init__(self, *ids: int) -> None:
        self.ids = tuple(sorted(set(ids)))
        noun = self.table if len(self.ids) == 1 else f"{self.table}s"
        super().__init__(f"no {noun} with id {', '.join(map(str, self.ids))}")


class UnknownStudentError(UnknownIdError):
    table = "student"


class UnknownCourseError(UnknownIdError):
    table = "course"


def roster(session: Session) -> Sequence[Student]:
    """Every student, ordered by id, with their courses loaded."""
    return session.scalars(select(Student).options(selectinload(Student.courses)).order_by(Student.id)).all()


ROSTER = (
    select(
        Student.name,
        # Students without courses get '{}', not NULL; titles follow course ids, as in ``roster``.
        func.coalesce(
            func.array_agg(aggregate_order_by(Course.title, Course.id)).filter(Course.id.is_not(None)),
            text("'{}'"),
        ),
    )
    .outerjoin(student_course, student_course.c.student_id == Student.id)
    .outerjoin(Course, Course.id == student_course.c.course_id)
    .group_by(Student.id)
    .order_by(Student.id)
)


def iter_roster(session: Session, batch: int = 1000) -> Iterator[tuple[str, Sequence[str]]]:
    """Every student's name and course titles, ordered like ``roster``, streamed."""
    yield from session.execute(ROSTER.execution_options(yield_per=batch))


def roster_text(roster: Iterable[tuple[str, Sequence[str]]]) -> str:
    """The roster as the seed tutorial prints it."""
    return "".join(
        f"Student: {name}\n" + "".join(f"  Course: {title}\n" for title in titles) for name, titles in roster
    )


def ids_opposite(side: Column[int], wanted: Column[int]) -> Select[Sequence[int]]:
    """`wanted` of the enrollments whose `side` is :id, ascending, as one array (NULL for none).

    One row holding an array, not a row per id: once the index is read, rows are the cost.
    """
    return select(func.array_agg(aggregate_order_by(wanted, wanted))).where(side == bindparam("id"))


# Built once: building a statement costs more than running it through an index.
STUDENT_IDS_OF = ids_opposite(student_course.c.course_id, student_course.c.student_id)
COURSE_IDS_OF = ids_opposite(student_course.c.student_id, student_course.c.course_id)


def student_ids_of(session: Session, course_id: int) -> list[int]:
    """Ids of the students enrolled in the course, ascending; [] for a course nobody takes."""
    ids = session.scalar(STUDENT_IDS_OF, {"id": course_id})
    if ids is None:
        raise_unknown(session, courses=[course_id])
    return list(ids or ())


def course_ids_of(session: Session, student_id: int) -> list[int]:
    """Ids of the student's courses, ascending; [] for a student in no course."""
    ids = session.scalar(COURSE_IDS_OF, {"id": student_id})
    if ids is None:
        raise_unknown(session, students=[student_id])
    return list(ids or ())


ENROLL = text(
    """
    INSERT INTO student_course (student_id, course_id)
    SELECT * FROM unnest(CAST(:students AS bigint[]), CAST(:courses AS bigint[]))
    ON CONFLICT DO NOTHING
    """
)


def enroll_many(session: Session, pairs: Iterable[tuple[int, int]]) -> int:
    """Enroll every (student_id, course_id) pair in one statement; return how many were new.

    Runs in the session's transaction (the caller commits) under a savepoint, so an
    unknown id raises UnknownStudentError or UnknownCourseError and leaves the transaction usable.
    """
    students: list[int] = []
    courses: list[int] = []
    for student_id, course_id in pairs:
        students.append(student_id)
        courses.append(course_id)
    if not students:
        return 0
    try:
        with session.begin_nested():
            inserted = session.connection().execute(ENROLL, {"students": students, "courses": courses})
    except IntegrityError as error:
        if isinstance(error.orig, ForeignKeyViolation):
            # Which ids, read after the failure in the same transaction: no pre-check to race.
            raise_unknown(session, students, courses)
        raise
    return inserted.rowcount


def enroll(session: Session, student_id: int, course_id: int) -> bool:
    """Enroll one pair; False when it already was."""
    return enroll_many(session, [(student_id, course_id)]) == 1


def unenroll(session: Session, student_id: int, course_id: int) -> bool:
    """Unenroll one pair; False when it was not enrolled."""
    deleted = session.connection().execute(
        delete(student_course).where(
            student_course.c.student_id == student_id, student_course.c.course_id == course_id
        )
    )
    if not deleted.rowcount:
        raise_unknown(session, [student_id], [course_id])
    return deleted.rowcount == 1


def raise_unknown(session: Session, students: Iterable[int] = (), courses: Iterable[int] = ()) -> None:
    """Raise UnknownStudentError (else UnknownCourseError) for the ids that name no row, if any."""
    for table, ids, error in (
        ("students", students, UnknownStudentError),
        ("courses", courses, UnknownCourseError),
    ):
        absent = session.scalars(
            text(
                f"SELECT DISTINCT wanted.id FROM unnest(CAST(:ids AS bigint[])) AS wanted(id) "
                f"WHERE NOT EXISTS (SELECT FROM {table} WHERE {table}.id = wanted.id)"
            ),
            {"ids": list(ids)},
        ).all()
        if absent:
            raise error(*absent)
