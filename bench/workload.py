"""The data the benchmark loads, and the contenders it times."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Any, TypeVar

import psycopg
from alembic import command
from sqlalchemy import URL, Engine, event
from sqlalchemy.orm import Session

from migrations.database.scratch import admin, alembic_config
from migrations.database.url import conninfo
from models import Course, Student
from models.queries import enroll_many, iter_roster, roster

COURSES_PER_STUDENT = 5
STARTED = time.perf_counter()

Roster = list[tuple[str, list[str]]]
Pair = tuple[int, int]
T = TypeVar("T")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def migrate(url: URL, direction: str, revision: str) -> float:
    """Run ``alembic upgrade|downgrade revision`` on url, in process; return its seconds."""
    config = alembic_config(url)
    start = time.perf_counter()
    getattr(command, direction)(config, revision)
    return time.perf_counter() - start


def courses_for(students: int) -> int:
    return min(max(students // 100, 100), 1000)


def load_people(url: URL, students: int, courses: int) -> tuple[list[int], list[int]]:
    """Add `students` students and `courses` courses; return the new ids of each."""
    with psycopg.connect(conninfo(url)) as conn:
        student_ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO students (name) SELECT 'student ' || n FROM generate_series(1, %s) n "
                "RETURNING id",
                (students,),
            )
        ]
        course_ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO courses (title) SELECT 'course ' || n FROM generate_series(1, %s) n "
                "RETURNING id",
                (courses,),
            )
        ]
    return sorted(student_ids), sorted(course_ids)


def pairs_of(student_ids: list[int], course_ids: list[int]) -> list[Pair]:
    """COURSES_PER_STUDENT distinct courses per student, spread evenly over the courses."""
    count = len(course_ids)
    return [
        (student, course_ids[(index * 7 + k * 13) % count])
        for index, student in enumerate(student_ids)
        for k in range(COURSES_PER_STUDENT)
    ]


def vacuum_analyze(url: URL) -> None:
    """Statistics for the planner, and a visibility map so index-only scans skip the heap."""
    with admin(url) as conn:
        conn.execute("VACUUM ANALYZE")


def best_of(repeat: int, run: Callable[[], T], reset: Callable[[], object] | None = None) -> tuple[float, T]:
    """The fastest of up to `repeat` runs; a run slower than a second is not repeated."""
    times: list[float] = []
    while True:
        if reset is not None:
            reset()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        if len(times) >= repeat or times[-1] > 1:
            return min(times), result


# (a) the roster


def seed_loop_roster(engine: Engine) -> Roster:
    """The seed demo's way: all students, then each one's courses lazily, one query each."""
    with Session(engine) as session:
        return [
            (student.name, [course.title for course in student.courses])
            for student in session.query(Student).all()
        ]


def project_roster(engine: Engine) -> Roster:
    with Session(engine) as session:
        return [(student.name, [course.title for course in student.courses]) for student in roster(session)]


def streamed_roster(engine: Engine) -> Roster:
    with Session(engine) as session:
        return [(name, list(titles)) for name, titles in iter_roster(session)]


RAW_ROSTER = """
    SELECT s.id, s.name, c.title
    FROM students AS s
    LEFT JOIN student_course AS sc ON sc.student_id = s.id
    LEFT JOIN courses AS c ON c.id = sc.course_id
    ORDER BY s.id, c.id
"""


def raw_roster(conn: psycopg.Connection[Any]) -> Roster:
    """The floor: one join, rows grouped in Python, no ORM."""
    rows = conn.execute(RAW_ROSTER).fetchall()
    return [
        (name, [title for _, _, title in group if title is not None])
        for (_, name), group in groupby(rows, key=lambda row: (row[0], row[1]))
    ]


# (b) bulk enrollment


def seed_way_enroll(engine: Engine, pairs: list[Pair]) -> None:
    """The seed demo's way: ORM objects, appended to relationship lists one by one, then commit."""
    with Session(engine) as session:
        students = {student.id: student for student in session.query(Student)}
        courses = {course.id: course for course in session.query(Course)}
        for student_id, course_id in pairs:
            students[student_id].courses.append(courses[course_id])
        session.commit()


def project_enroll(engine: Engine, pairs: list[Pair]) -> None:
    with Session(engine) as session:
        enroll_many(session, pairs)
        session.commit()


def copy_enroll(url: URL, pairs: list[Pair]) -> None:
    """The floor: COPY, psycopg's cursor.copy."""
    with (
        psycopg.connect(conninfo(url)) as conn,
        conn.cursor().copy("COPY student_course (student_id, course_id) FROM STDIN") as copy,
    ):
        for pair in pairs:
            copy.write_row(pair)


def count_enrollments(url: URL) -> int:
    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute("SELECT count(*) FROM student_course").fetchone()
    assert row is not None
    return int(row[0])


# (c) lookups


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements the engine sends while the block runs, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


SEQUENTIAL_ONLY = ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan")


def only_index_only_scans(plan: Sequence[str]) -> bool:
    """True when every scan in the EXPLAIN output is an Index Only Scan, and there is one."""
    scans = [line.strip(" ->") for line in plan if " Scan " in line]
    return bool(scans) and all(scan.startswith("Index Only Scan") for scan in scans)


@contextmanager
def planned(engine: Engine, forced: bool) -> Iterator[Session]:
    """A session; `forced` prices index paths out of its plans, leaving sequential scans."""
    with Session(engine) as session:
        for setting in SEQUENTIAL_ONLY if forced else ():
            session.connection().exec_driver_sql(f"SET LOCAL {setting} = off")
        yield session


def explain(engine: Engine, statement: str, parameters: Any, forced: bool) -> list[str]:
    with planned(engine, forced) as session:
        plan = session.connection().exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
        return [str(line) for line in plan.scalars()]


def lookup_all(
    engine: Engine, lookup: Callable[[Session, int], list[int]], ids: list[int], forced: bool
) -> None:
    with planned(engine, forced) as session:
        for row_id in ids:
            lookup(session, row_id)


def ids(url: URL, table: str) -> list[int]:
    with psycopg.connect(conninfo(url)) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


# (d) migrations: scans counted per table by the statistics collector

SCAN_COUNTERS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch")
TABLES = ("students", "courses", "student_course")


def scan_counters(url: URL) -> dict[str, dict[str, int]]:
    """pg_stat_user_tables, once every other backend on the database has exited (and so flushed)."""
    with admin(url) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            others = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if others is not None and others[0] == 0:
                break
            time.sleep(0.05)
        rows = conn.execute(
            f"SELECT relname, {', '.join(SCAN_COUNTERS)} FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(TABLES),),
        ).fetchall()
    return {row[0]: dict(zip(SCAN_COUNTERS, (int(v or 0) for v in row[1:]), strict=True)) for row in rows}


def counter_delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {table: {k: after[table][k] - before[table][k] for k in SCAN_COUNTERS} for table in TABLES}
