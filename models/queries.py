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
- ``newest_students_of``: a course's students, newest enrollment first, unknown dates last, a
  page at a time (keyset pagination: the next page starts after the last row seen), each page
  read from one index range with no sort, however deep.
- ``enroll_many``: any number of pairs in one statement (``unnest`` of two arrays), dated now.
- ``enroll`` / ``unenroll``: one pair, idempotent, True when something changed.

An id that names no row raises ``UnknownStudentError`` or ``UnknownCourseError``, naming the
ids, and changes nothing. Nothing here commits: the caller does. The writes are SQL, not
collection appends, so a ``Student`` the session already holds keeps its old ``courses``
until it is expired (``session.expire(student)``) or the session commits.
"""

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from psycopg.errors import ForeignKeyViolation
from sqlalchemy import Select, bindparam, delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from models.courses import Course
from models.student_course import Enrollment
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
    .outerjoin(Enrollment, Enrollment.student_id == Student.id)
    .outerjoin(Course, Course.id == Enrollment.course_id)
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


def ids_opposite(
    side: InstrumentedAttribute[int], wanted: InstrumentedAttribute[int]
) -> Select[Sequence[int]]:
    """`wanted` of the enrollments whose `side` is :id, ascending, as one array (NULL for none).

    One row holding an array, not a row per id: once the index is read, rows are the cost.
    """
    return select(func.array_agg(aggregate_order_by(wanted, wanted))).where(side == bindparam("id"))


# Built once: building a statement costs more than running it through an index.
STUDENT_IDS_OF = ids_opposite(Enrollment.course_id, Enrollment.student_id)
COURSE_IDS_OF = ids_opposite(Enrollment.student_id, Enrollment.course_id)


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


# A page of a course's enrollments in the order of ix_student_course_course_id_enrolled_at_student_id:
# newest first, undated last, ties by student_id descending, so "after a row" is one row comparison.
NEWEST_FIRST = (
    select(Enrollment.student_id, Enrollment.enrolled_at)
    .where(Enrollment.course_id == bindparam("course_id"))
    .order_by(Enrollment.enrolled_at.desc().nulls_last(), Enrollment.student_id.desc())
    .limit(bindparam("limit"))
)
# After a dated row: the dated rows after it (undated rows compare as NULL and drop out) ...
DATED_AFTER = NEWEST_FIRST.where(
    tuple_(Enrollment.enrolled_at, Enrollment.student_id)
    < tuple_(bindparam("enrolled_at"), bindparam("student_id"))
)
# ... and, once those run out, the undated ones; after an undated row, the undated ones after it.
UNDATED_AFTER = NEWEST_FIRST.where(
    Enrollment.enrolled_at.is_(None), Enrollment.student_id < bindparam("student_id")
)

Page = list[tuple[int, datetime | None]]
MAX_BIGINT = 2**63 - 1


def newest_students_of(
    session: Session, course_id: int, *, limit: int = 50, after: tuple[int, datetime | None] | None = None
) -> Page:
    """A page of `limit` (student_id, enrolled_at) of the course: newest first, unknown dates last.

    The next page is ``newest_students_of(..., after=page[-1])``; an empty page is the end. Each
    statement reads one range of the index, index-only, with no sort.
    """
    params = {"course_id": course_id, "limit": limit}
    if after is None:
        page: Page = [(s, t) for s, t in session.execute(NEWEST_FIRST, params)]
        if not page:
            raise_unknown(session, courses=[course_id])
        return page
    student_id, enrolled_at = after
    if enrolled_at is None:
        return [(s, t) for s, t in session.execute(UNDATED_AFTER, {**params, "student_id": student_id})]
    dated = {**params, "student_id": student_id, "enrolled_at": enrolled_at}
    page = [(s, t) for s, t in session.execute(DATED_AFTER, dated)]
    if len(page) < limit:
        rest = {**params, "limit": limit - len(page), "student_id": MAX_BIGINT}
        page += [(s, t) for s, t in session.execute(UNDATED_AFTER, rest)]
    return page


ENROLL = text(
    """
    INSERT INTO student_course (student_id, course_id, enrolled_at)
    SELECT student_id, course_id, now()
    FROM unnest(CAST(:students AS bigint[]), CAST(:courses AS bigint[])) AS pair(student_id, course_id)
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
        delete(Enrollment).where(Enrollment.student_id == student_id, Enrollment.course_id == course_id)
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
