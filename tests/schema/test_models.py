"""The models' behaviour through the ORM, on a migrated database."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import URL, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Course, Enrollment, Student, student_course
from tests.helpers.types import EngineAt


@pytest.fixture
def session(head_url: URL, engine_at: EngineAt) -> Iterator[Session]:
    with Session(engine_at(head_url)) as session:
        yield session


def by_name(session: Session, name: str) -> Student:
    return session.scalars(select(Student).where(Student.name == name)).one()


def by_title(session: Session, title: str) -> Course:
    return session.scalars(select(Course).where(Course.title == title)).one()


def count(session: Session, table: Any) -> int:
    return session.scalar(select(func.count()).select_from(table)) or 0


def test_appending_a_course_to_a_student_shows_the_student_in_the_course() -> None:
    alice, maths = Student(name="Alice"), Course(title="Mathematics")

    alice.courses.append(maths)

    assert maths.students == [alice]
    alice.courses.remove(maths)
    assert maths.students == []


def test_appending_a_student_to_a_course_shows_the_course_in_the_student() -> None:
    bob, art = Student(name="Bob"), Course(title="Art")

    art.students.append(bob)

    assert bob.courses == [art]


def test_the_composite_key_rejects_a_duplicate_enrollment(session: Session) -> None:
    bob, history = by_name(session, "Bob"), by_title(session, "History")
    session.execute(student_course.insert().values(student_id=bob.id, course_id=history.id))
    session.commit()

    with pytest.raises(IntegrityError, match="pk_student_course"):
        session.execute(student_course.insert().values(student_id=bob.id, course_id=history.id))


def test_deleting_a_student_removes_its_enrollments_and_keeps_the_courses(session: Session) -> None:
    session.delete(by_name(session, "Alice"))
    session.commit()

    assert count(session, student_course) == 1  # Bob in Mathematics
    assert count(session, Course) == 2
    assert [c.title for c in by_name(session, "Bob").courses] == ["Mathematics"]


def test_deleting_a_course_removes_its_enrollments_and_keeps_the_students(session: Session) -> None:
    session.delete(by_title(session, "Mathematics"))
    session.commit()

    assert count(session, student_course) == 1  # Alice in History
    assert count(session, Student) == 2
    assert by_name(session, "Bob").courses == []


@pytest.mark.parametrize(
    ("model", "field", "value", "constraint"),
    [
        (Student, "name", None, "not-null"),
        (Student, "name", "", "ck_students_name_not_blank"),
        (Student, "name", " \t\n", "ck_students_name_not_blank"),
        (Course, "title", None, "not-null"),
        (Course, "title", "", "ck_courses_title_not_blank"),
        (Course, "title", "   ", "ck_courses_title_not_blank"),
    ],
)
def test_the_database_rejects_null_and_blank_names_and_titles(
    session: Session, model: type[Student] | type[Course], field: str, value: str | None, constraint: str
) -> None:
    session.add(model(**{field: value}))
    with pytest.raises(
        IntegrityError, match=constraint if constraint != "not-null" else "not-null|null value"
    ):
        session.commit()


def test_a_course_appended_through_the_seeds_api_becomes_an_enrollment_the_database_dates(
    session: Session,
) -> None:
    carol, art = Student(name="Carol"), Course(title="Art")
    carol.courses.append(art)
    session.add(carol)
    session.commit()
    before_now = session.scalar(select(func.now()))
    assert before_now is not None

    [enrollment] = carol.enrollments
    assert (enrollment.student, enrollment.course) == (carol, art)
    assert enrollment.enrolled_at is not None
    assert enrollment.enrolled_at <= before_now
    assert [e.student for e in art.enrollments] == [carol]


def test_the_seeds_enrollments_made_before_dates_were_recorded_have_no_date(session: Session) -> None:
    alice = by_name(session, "Alice")

    assert [e.course.title for e in alice.enrollments] == ["Mathematics", "History"]
    assert [e.enrolled_at for e in alice.enrollments] == [None, None]


def test_an_enrollment_can_be_created_with_a_date_of_its_own(session: Session) -> None:
    bob, history = by_name(session, "Bob"), by_title(session, "History")
    when = datetime(2020, 9, 1, tzinfo=UTC)

    session.add(Enrollment(student_id=bob.id, course_id=history.id, enrolled_at=when))
    session.commit()
    session.expire_all()

    assert [c.title for c in bob.courses] == ["Mathematics", "History"]
    assert [e.enrolled_at for e in bob.enrollments] == [None, when]
