"""models/access.py on a real PostgreSQL: the roster without N+1, lookups, enrollment."""

from datetime import datetime

import pytest
from sqlalchemy import URL, func, select, text
from sqlalchemy.orm import Session

from bench.workload import only_index_only_scans, statements
from models import Course, Enrollment, Student
from models.queries import (
    UnknownCourseError,
    UnknownStudentError,
    course_ids_of,
    enroll,
    enroll_many,
    iter_roster,
    newest_students_of,
    roster,
    student_ids_of,
    unenroll,
)
from tests.helpers.types import EngineAt


def add_students(session: Session, count: int, course_ids: list[int]) -> list[int]:
    """`count` new students, each enrolled in every course of `course_ids`."""
    ids = list(
        session.scalars(
            text(
                "INSERT INTO students (name) SELECT 'student ' || n "
                "FROM generate_series(1, :n) AS n RETURNING id"
            ),
            {"n": count},
        )
    )
    enroll_many(session, [(student, course) for student in ids for course in course_ids])
    return ids


def seeded(session: Session) -> tuple[int, int, int, int]:
    """Ids of Alice, Bob, Mathematics and History."""
    alice, bob = (
        session.scalars(select(Student.id).where(Student.name == name)).one() for name in ("Alice", "Bob")
    )
    maths, history = (
        session.scalars(select(Course.id).where(Course.title == title)).one()
        for title in ("Mathematics", "History")
    )
    return alice, bob, maths, history


def enrollments(session: Session) -> set[tuple[int, int]]:
    return {(s, c) for s, c in session.execute(select(Enrollment.student_id, Enrollment.course_id))}


def loaded_roster(session: Session) -> list[tuple[str, list[str]]]:
    return [(student.name, [course.title for course in student.courses]) for student in roster(session)]


def test_roster_sends_as_many_statements_for_forty_students_as_for_two(
    head_url: URL, engine_at: EngineAt
) -> None:
    engine = engine_at(head_url)
    counts = []
    with Session(engine) as session:
        for extra in (0, 40):
            _, _, maths, history = seeded(session)
            add_students(session, extra, [maths, history])
            session.expire_all()
            with statements(engine) as sent:
                names = [name for name, _ in loaded_roster(session)]
                streamed = list(iter_roster(session))
            assert len(names) == len(streamed) == 2 + extra
            counts.append(len(sent))
    assert counts[0] == counts[1]


def test_streamed_roster_yields_the_loaded_roster_in_batches_smaller_than_the_table(
    head_url: URL, engine_at: EngineAt
) -> None:
    with Session(engine_at(head_url)) as session:
        _, _, maths, history = seeded(session)
        add_students(session, 5, [history, maths])
        add_students(session, 3, [])
        expected = loaded_roster(session)
        assert [(name, list(titles)) for name, titles in iter_roster(session, batch=3)] == expected
    assert expected[:2] == [("Alice", ["Mathematics", "History"]), ("Bob", ["Mathematics"])]
    assert expected[-1] == ("student 3", [])


def test_lookups_return_each_side_of_the_enrollments_and_empty_for_a_row_without_any(
    head_url: URL, engine_at: EngineAt
) -> None:
    with Session(engine_at(head_url)) as session:
        alice, bob, maths, history = seeded(session)
        [loner] = add_students(session, 1, [])
        assert student_ids_of(session, maths) == [alice, bob]
        assert student_ids_of(session, history) == [alice]
        assert course_ids_of(session, alice) == [maths, history]
        assert course_ids_of(session, loner) == []


def test_lookups_read_only_an_index_of_the_enrollments(head_url: URL, engine_at: EngineAt) -> None:
    engine = engine_at(head_url)
    with Session(engine) as session:
        alice, _, maths, _ = seeded(session)
        with statements(engine) as sent:
            student_ids_of(session, maths)
            course_ids_of(session, alice)
        # The tables are tiny, so only with sequential scans priced out does the plan show the path.
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_bitmapscan = off"))
        for statement, parameters in sent:
            plan = session.connection().exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
            assert only_index_only_scans(plan), plan


def test_lookups_of_an_unknown_id_raise_an_error_naming_it(head_url: URL, engine_at: EngineAt) -> None:
    with Session(engine_at(head_url)) as session:
        with pytest.raises(UnknownCourseError, match=r"^no course with id 999$"):
            student_ids_of(session, 999)
        with pytest.raises(UnknownStudentError, match=r"^no student with id 998$"):
            course_ids_of(session, 998)


def test_bulk_enrollment_returns_how_many_pairs_were_new_and_is_idempotent(
    head_url: URL, engine_at: EngineAt
) -> None:
    with Session(engine_at(head_url)) as session:
        alice, bob, maths, history = seeded(session)
        before = enrollments(session)
        pairs = [(bob, history), (bob, history), (alice, maths)]  # a duplicate, and one already enrolled
        assert enroll_many(session, pairs) == 1
        assert enroll_many(session, pairs) == 0
        assert enroll_many(session, []) == 0
        session.commit()
        assert enrollments(session) == before | {(bob, history)}


def test_enroll_and_unenroll_report_whether_they_changed_anything(head_url: URL, engine_at: EngineAt) -> None:
    with Session(engine_at(head_url)) as session:
        _, bob, _, history = seeded(session)
        assert enroll(session, bob, history) is True
        assert enroll(session, bob, history) is False
        assert (bob, history) in enrollments(session)
        assert unenroll(session, bob, history) is True
        assert unenroll(session, bob, history) is False
        assert (bob, history) not in enrollments(session)


def test_unknown_ids_raise_an_error_naming_them_and_change_nothing(
    head_url: URL, engine_at: EngineAt
) -> None:
    with Session(engine_at(head_url)) as session:
        alice, bob, maths, history = seeded(session)
        before = enrollments(session)
        with pytest.raises(UnknownStudentError, match=r"^no students with id 997, 998$") as raised:
            enroll_many(session, [(bob, history), (998, maths), (997, maths), (998, history)])
        assert raised.value.ids == (997, 998)
        with pytest.raises(UnknownCourseError, match=r"^no course with id 999$"):
            enroll_many(session, [(bob, history), (alice, 999)])
        with pytest.raises(UnknownCourseError, match=r"^no course with id 999$"):
            enroll(session, bob, 999)
        with pytest.raises(UnknownStudentError, match=r"^no student with id 998$"):
            unenroll(session, 998, maths)
        assert enrollments(session) == before  # the transaction is still usable
        session.commit()
        assert session.scalar(select(func.count()).select_from(Enrollment)) == len(before)


def dated_roster(session: Session, course_id: int) -> list[tuple[int, datetime | None]]:
    """A course with 7 dated enrollments (two on the same day) and 5 undated, as the truth to page through."""
    ids = add_students(session, 12, [])
    days = [3, 1, 4, 1, 5, 9, 2]
    session.execute(
        text(
            "INSERT INTO student_course (student_id, course_id, enrolled_at) "
            "SELECT s, :course, timestamptz '2026-01-01' + d * interval '1 day' "
            "FROM unnest(CAST(:students AS bigint[]), CAST(:days AS int[])) AS pair(s, d)"
        ),
        {"course": course_id, "students": ids, "days": days + [None] * 5},
    )
    everyone = session.execute(
        select(Enrollment.student_id, Enrollment.enrolled_at).where(Enrollment.course_id == course_id)
    ).all()
    dated = sorted((row for row in everyone if row[1] is not None), key=lambda r: (r[1], r[0]), reverse=True)
    undated = sorted((row for row in everyone if row[1] is None), key=lambda r: r[0], reverse=True)
    return [(s, t) for s, t in dated + undated]


@pytest.mark.parametrize("limit", [1, 3, 5, 50])
def test_a_courses_newest_students_page_through_every_enrollment_once_newest_first_undated_last(
    limit: int, head_url: URL, engine_at: EngineAt
) -> None:
    with Session(engine_at(head_url)) as session:
        _, _, _, history = seeded(session)
        truth = dated_roster(session, history)
        pages = [newest_students_of(session, history, limit=limit)]
        while pages[-1]:
            pages.append(newest_students_of(session, history, limit=limit, after=pages[-1][-1]))

    assert [row for page in pages for row in page] == truth
    assert all(len(page) == limit for page in pages[:-2])
    assert truth[-1][1] is None
    assert truth[0][1] is not None


def test_each_page_of_newest_students_is_read_from_the_index_alone_without_a_sort(
    head_url: URL, engine_at: EngineAt
) -> None:
    engine = engine_at(head_url)
    with Session(engine) as session:
        _, _, _, history = seeded(session)
        truth = dated_roster(session, history)
        session.commit()
        with statements(engine) as sent:
            newest_students_of(session, history, limit=3)
            newest_students_of(session, history, limit=3, after=truth[2])  # dated rows after a dated one
            newest_students_of(session, history, limit=8, after=truth[2])  # ... and into the undated
            newest_students_of(session, history, limit=3, after=truth[-3])  # undated after an undated one
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_bitmapscan = off"))
        assert len(sent) == 5
        for statement, parameters in sent:
            plan = session.connection().exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
            assert only_index_only_scans(plan), plan
            assert "ix_student_course_course_id_enrolled_at_student_id" in "\n".join(plan), plan
            assert not any("Sort" in line for line in plan), plan


def test_enrolling_dates_the_enrollment_and_newest_students_of_an_unknown_course_is_an_error(
    head_url: URL, engine_at: EngineAt
) -> None:
    with Session(engine_at(head_url)) as session:
        _, bob, _, history = seeded(session)
        enroll(session, bob, history)
        now = session.scalar(select(func.now()))
        assert newest_students_of(session, history)[0] == (bob, now)
        with pytest.raises(UnknownCourseError, match=r"^no course with id 999$"):
            newest_students_of(session, 999)
